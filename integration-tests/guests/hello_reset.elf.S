# "hello", then a reset: a complete ELF64 executable written out by hand
# (ELF header and one PT_LOAD program header, then the code), so that the
# flat output of as + objcopy is the ELF file itself, byte for byte the
# same on every binutils. vmm-bin recognises a plain ELF64 program and
# enters it in 64-bit long mode at e_entry (1 MiB + 0x78).
# It prints "hello" and a newline on COM1, then asks for a reset the way a
# PC does: 0xFE to the i8042 command port (--platform pc: the VM ends with
# "guest requested a reset", status 14). Where no i8042 answers (the
# default minimal platform) it triple-faults (an empty IDT and ud2:
# status 4), which also resets a PC.
#   vmm-bin --kernel guests/hello_reset.elf                 -> hello, status 4
#   vmm-bin --kernel guests/hello_reset.elf --platform pc   -> hello, status 14
# The start-up bench (scripts/bench-startup.sh) times both.
# Rebuild: guests/build.sh (integration-tests checks the committed file).
    .code64
    .text
    .set BASE, 0x100000
ehdr:
    .byte 0x7f, 'E', 'L', 'F'
    .byte 2, 1, 1, 0            # ELFCLASS64, little-endian, version 1, System V
    .quad 0                     # padding of e_ident
    .word 2                     # e_type: ET_EXEC
    .word 62                    # e_machine: EM_X86_64
    .long 1                     # e_version
    .quad BASE + start - ehdr   # e_entry
    .quad phdr - ehdr           # e_phoff
    .quad 0                     # e_shoff: no section headers
    .long 0                     # e_flags
    .word phdr - ehdr           # e_ehsize (64)
    .word start - phdr          # e_phentsize (56)
    .word 1                     # e_phnum
    .word 64                    # e_shentsize
    .word 0                     # e_shnum
    .word 0                     # e_shstrndx
phdr:
    .long 1                     # p_type: PT_LOAD
    .long 5                     # p_flags: R + X
    .quad 0                     # p_offset: the whole file...
    .quad BASE                  # p_vaddr
    .quad BASE                  # p_paddr: ...at 1 MiB
    .quad end - ehdr            # p_filesz
    .quad end - ehdr            # p_memsz
    .quad 0x1000                # p_align
start:
    mov $0x3f8, %dx             # COM1 THR
    lea msg(%rip), %rsi
1:  lodsb
    test %al, %al
    jz 2f
    out %al, (%dx)
    jmp 1b
2:  mov $0xfe, %al              # i8042: pulse the reset line
    out %al, $0x64
    lidt empty_idt(%rip)        # no i8042: #UD with no IDT -> triple fault
    ud2
msg:
    .asciz "hello\n"
empty_idt:
    .word 0                     # limit
    .quad 0                     # base
end:
