# Counts forever on port 0x10: out %ax,$0x10 with AX = 0, 1, 2, ...
#   vmm-bin --kernel guests/counter.bin --load-addr 0x10000 --entry 0x1000:0 \
#           --trace-io --max-exits 6
    .code16
    .text
    xor %ax, %ax
1:  out %ax, $0x10
    inc %ax
    jmp 1b
