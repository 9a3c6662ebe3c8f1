/*
 * The GDB test guest: a static ELF64 program (entered in long mode at
 * _start, CPL0) with a global variable and a function, built with debug
 * information so gdb can break at `bump`, print `counter` and watch it.
 *
 * guest_main() calls bump() three times, spins while `spin` is set (gdb sets
 * it; the guest says "spinning" on COM1 first), then writes the final count to the debug-exit port 0xf4: the VMM
 * exits with status (count << 1) | 1.
 */

volatile unsigned long counter;
/* Set by gdb to keep the guest busy (an interrupt test), counted in
   `spins` until gdb clears it. */
volatile unsigned long spin;
volatile unsigned long spins;

/* Kept out of line so `break bump` has a function to stop in. */
__attribute__((noinline)) void bump(unsigned long by)
{
	counter += by;
}

static void outb(unsigned short port, unsigned char value)
{
	__asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port));
}

/* Writes `s` to COM1 (the VMM's console). */
static void puts_com1(const char *s)
{
	while (*s)
		outb(0x3f8, (unsigned char)*s++);
}

static void debug_exit(unsigned char value)
{
	__asm__ volatile("outb %0, $0xf4" : : "a"(value));
}

void guest_main(void)
{
	bump(1);
	bump(2);
	bump(3);
	if (spin)
		puts_com1("spinning\n");
	while (spin)
		spins++;
	debug_exit((unsigned char)counter);
	for (;;)
		__asm__ volatile("hlt");
}

/* 16 KiB of stack, set up before any C runs. */
__attribute__((used, aligned(16))) static unsigned char stack[16384];

__asm__(".section .text.start\n"
	".global _start\n"
	"_start:\n"
	"	lea stack+16384(%rip), %rsp\n"
	"	call guest_main\n"
	"1:	hlt\n"
	"	jmp 1b\n"
	".previous\n");
