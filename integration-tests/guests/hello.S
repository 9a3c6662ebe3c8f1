# The classic "hello KVM" guest (LWN, "Using the KVM API", 2015): 16-bit real
# mode, prints the digit AL + BL and a newline on COM1, then halts.
#   vmm-bin --kernel guests/hello.bin --reg rax=2 --reg rbx=2   -> prints 4
# Rebuild: guests/build.sh (integration-tests checks hello.bin matches).
    .code16
    .text
    mov $0x3f8, %dx
    add %bl, %al
    add $'0', %al
    out %al, (%dx)
    mov $'\n', %al
    out %al, (%dx)
    hlt
