/*
 * The GDB test guest: a static ELF64 program (entered in long mode at
 * _start, CPL0) with a global variable and a function, built with debug
 * information so gdb can break at `bump`, print `counter` and watch it.
 *
 * guest_main() calls bump() three times, spins while `spin` is set (gdb
 * sets it; the guest says "spinning" on its debug console first), then writes the final
 * count to the debug-exit port 0xf4: the VMM exits with status
 * (count << 1) | 1. With `user_mode` set (by gdb) it goes to user_main at
 * CPL3 instead, which adds 2 to the count, spins there too while `spin` is
 * set, and exits.
 */

volatile unsigned long counter;
/* Set by gdb to keep the guest busy (an interrupt test), counted in
   `spins` until gdb clears it. */
volatile unsigned long spin;
volatile unsigned long spins;
/* Set by gdb to finish in user mode (CPL3): user_main counts in
   `user_counter` and exits from there. */
volatile unsigned long user_mode;
volatile unsigned long user_counter;

/* Kept out of line so `break bump` has a function to stop in. */
__attribute__((noinline)) void bump(unsigned long by)
{
	counter += by;
}

/* Writes `s` to the debug console (port 0xe9, the VMM's console), with the
 * imm8 form of `out`: on the project's nested hosts `out %al, (%dx)` from
 * user mode (to COM1) triple-faulted this guest, `out %al, $imm8` works. */
static void puts_debugcon(const char *s)
{
	while (*s)
		__asm__ volatile("outb %0, $0xe9" : : "a"(*s++));
}

static void debug_exit(unsigned char value)
{
	__asm__ volatile("outb %0, $0xf4" : : "a"(value));
}

/* Runs at CPL3 (IOPL 3 lets it use the debug-exit port). */
__attribute__((noinline)) void user_main(void)
{
	user_counter++;
	user_counter++;
	if (spin)
		puts_debugcon("spinning in user mode\n");
	while (spin)
		spins++;
	debug_exit((unsigned char)(counter + user_counter));
	for (;;)
		;
}

/* The loader's selectors (code 0x10, data 0x18) plus user code and data. */
static unsigned long long gdt[6] __attribute__((aligned(16))) = {
	0,
	0,
	0x00af9b000000ffffULL, /* 0x10: kernel code, 64-bit */
	0x00cf93000000ffffULL, /* 0x18: kernel data */
	0x00cff3000000ffffULL, /* 0x20: user data, DPL 3 */
	0x00affb000000ffffULL, /* 0x28: user code, 64-bit, DPL 3 */
};

__attribute__((used, aligned(16))) static unsigned char user_stack[4096];

/* Makes the first 2 MiB user-accessible in the loader's page tables,
   loads the GDT above and returns to user_main at CPL3 (label to_user:
   the iretq). */
static void enter_user(void)
{
	unsigned long cr3;
	__asm__ volatile("mov %%cr3, %0" : "=r"(cr3));
	unsigned long *pml4 = (unsigned long *)(cr3 & ~0xfffUL);
	unsigned long *pdpt = (unsigned long *)(pml4[0] & 0x000ffffffffff000UL);
	unsigned long *pd = (unsigned long *)(pdpt[0] & 0x000ffffffffff000UL);
	pml4[0] |= 4;
	pdpt[0] |= 4;
	pd[0] |= 4;
	__asm__ volatile("mov %0, %%cr3" : : "r"(cr3) : "memory");
	struct {
		unsigned short limit;
		unsigned long base;
	} __attribute__((packed)) gdtr = { sizeof(gdt) - 1, (unsigned long)gdt };
	__asm__ volatile("lgdt %0" : : "m"(gdtr));
	__asm__ volatile("pushq $0x23\n"
			 "pushq %0\n"
			 "pushq $0x3002\n"
			 "pushq $0x2b\n"
			 "pushq %1\n"
			 ".global to_user\n"
			 "to_user:\n"
			 "iretq\n"
			 :
			 : "r"(user_stack + sizeof(user_stack)), "r"(user_main)
			 : "memory");
}

void guest_main(void)
{
	bump(1);
	bump(2);
	bump(3);
	if (user_mode)
		enter_user();
	if (spin)
		puts_debugcon("spinning\n");
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
