# The counter of counter.S, stopping at 10 (the tutorial's exercise,
# docs/TUTORIAL.md): out %ax,$0x10 with AX = 0..9, then hlt.
#   vmm-bin --kernel guests/counter_stop.bin --load-addr 0x10000 --entry 0x1000:0
    .code16
    .text
    xor %ax, %ax
1:  out %ax, $0x10
    inc %ax
    cmp $10, %ax
    jne 1b
    hlt
