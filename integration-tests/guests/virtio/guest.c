/*
 * A freestanding virtio-mmio driver used as a test guest. It is started as a
 * Linux "vmlinux" (64-bit entry, RSI = zero page) or, built with -DPVH, as a
 * PVH kernel (32-bit entry, EBX = hvm_start_info; the build QEMU's microvm
 * machine can boot, and that vmm-bin then boots the PVH way), finds its devices on the
 * kernel command line exactly as Linux's virtio_mmio driver does
 * ("virtio_mmio.device=4K@0x<base>:<gsi>"), initialises each one as virtio
 * 1.2 section 3.1.1 says, submits requests on split virtqueues, and waits
 * for each completion through the device's interrupt (IOAPIC pin = GSI,
 * vector 0x40 + slot). What it sees goes to the debug console (port 0xe9)
 * as text lines; the host test asserts on them. The test to run is named
 * by "vtest=<name>" on the command line.
 *
 * Kept simple for a CPL0 guest on an emulating host: no SSE, few
 * instructions, no exceptions expected (an empty IDT entry triple-faults,
 * which the test sees as status 4).
 */
#include <stdint.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;

__asm__(".pushsection .text.start, \"ax\"\n"
        ".global _start\n"
        "_start:\n"
        "  lea stack_top(%rip), %rsp\n"
        "  mov %rsi, %rdi\n"
        "  call main\n"
        "1: hlt\n"
        "  jmp 1b\n"
        ".popsection\n");

/* The ELF note that makes the loader treat this file as a vmlinux. */
__asm__(".pushsection .note.Linux, \"a\", @note\n"
        ".balign 4\n"
        ".long 6\n .long 4\n .long 0\n"
        ".asciz \"Linux\"\n .balign 4\n"
        ".long 0\n"
        ".popsection\n");

#ifdef PVH
/* XEN_ELFNOTE_PHYS32_ENTRY: the 32-bit entry, as an 8-byte value (QEMU
   reads a pointer-sized one from an ELF64). */
__asm__(".pushsection .note.Xen, \"a\", @note\n"
        ".balign 4\n"
        ".long 4\n .long 8\n .long 18\n"
        ".asciz \"Xen\"\n .balign 4\n"
        ".quad pvh_start\n"
        ".popsection\n");

/* Identity map of the low 4 GiB in 2 MiB pages (RAM and the MMIO windows
   of the virtio devices, IOAPIC and LAPIC). */
u64 pvh_pml4[512] __attribute__((aligned(4096), used));
u64 pvh_pdpt[512] __attribute__((aligned(4096), used));
u64 pvh_pd[4 * 512] __attribute__((aligned(4096), used));
u64 pvh_gdt[3] __attribute__((aligned(8), used)) = {
    0, 0x00af9a000000ffffull, 0x00cf92000000ffffull};
struct gdt_desc32 { u16 limit; u32 base; } __attribute__((packed));
struct gdt_desc32 pvh_gdt_desc __attribute__((used)) = {sizeof(pvh_gdt) - 1, 0};

/* PVH entry: 32-bit protected mode, paging off, EBX = start_info. Build the
   page tables, enter long mode, call pvh_main(start_info). */
__asm__(".pushsection .text.start, \"ax\"\n"
        ".code32\n"
        ".global pvh_start\n"
        "pvh_start:\n"
        "  mov %ebx, %esi\n"
        "  movl $pvh_gdt, pvh_gdt_desc + 2\n"
        "  mov $pvh_pdpt + 3, %eax\n"
        "  mov %eax, pvh_pml4\n"
        "  mov $pvh_pd + 3, %eax\n" /* pdpt[i] = &pd[512 * i] | P | RW */
        "  xor %ecx, %ecx\n"
        "2: mov %eax, pvh_pdpt(,%ecx,8)\n"
        "  add $4096, %eax\n"
        "  inc %ecx\n"
        "  cmp $4, %ecx\n"
        "  jne 2b\n"
        "  xor %ecx, %ecx\n" /* pd[i] = i * 2 MiB | PS | RW | P */
        "3: mov %ecx, %eax\n"
        "  shl $21, %eax\n"
        "  or $0x83, %eax\n"
        "  mov %eax, pvh_pd(,%ecx,8)\n"
        "  inc %ecx\n"
        "  cmp $2048, %ecx\n"
        "  jne 3b\n"
        "  mov $pvh_pml4, %eax\n"
        "  mov %eax, %cr3\n"
        "  mov %cr4, %eax\n"
        "  or $0x20, %eax\n"
        "  mov %eax, %cr4\n"
        "  mov $0xc0000080, %ecx\n"
        "  rdmsr\n"
        "  or $0x100, %eax\n"
        "  wrmsr\n"
        "  mov %cr0, %eax\n"
        "  or $0x80000001, %eax\n"
        "  mov %eax, %cr0\n"
        "  lgdt pvh_gdt_desc\n"
        "  ljmp $0x08, $4f\n"
        ".code64\n"
        "4: mov $0x10, %eax\n"
        "  mov %eax, %ds\n"
        "  mov %eax, %es\n"
        "  mov %eax, %ss\n"
        "  lea stack_top(%rip), %rsp\n"
        "  mov %esi, %edi\n"
        "  call pvh_main\n"
        "5: hlt\n"
        "  jmp 5b\n"
        ".popsection\n");
#endif

u8 guest_stack[16384] __attribute__((aligned(16), used));
__asm__(".global stack_top\n .set stack_top, guest_stack + 16384\n");

#define barrier() __asm__ volatile("" ::: "memory")

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }
static inline u32 mmio_read(u64 a) { return *(volatile u32 *)a; }
static inline void mmio_write(u64 a, u32 v) { *(volatile u32 *)a = v; }
static inline u8 mmio_read8(u64 a) { return *(volatile u8 *)a; }

void *memset(void *d, int c, unsigned long n) {
    u8 *p = d;
    while (n--) *p++ = (u8)c;
    return d;
}
void *memcpy(void *d, const void *s, unsigned long n) {
    u8 *p = d;
    const u8 *q = s;
    while (n--) *p++ = *q++;
    return d;
}

/* --- output ------------------------------------------------------------ */
static void putc_(char c) { outb(0xe9, (u8)c); }
static void puts_(const char *s) { while (*s) putc_(*s++); }
static void put_hex(u64 v, int digits) {
    for (int i = digits - 1; i >= 0; i--) putc_("0123456789abcdef"[(v >> (i * 4)) & 0xf]);
}
static void put_dec(u64 v) {
    char b[21];
    int i = 20;
    b[i] = 0;
    do { b[--i] = (char)('0' + v % 10); v /= 10; } while (v);
    puts_(&b[i]);
}
static void put_bytes_hex(const u8 *p, int n) { for (int i = 0; i < n; i++) put_hex(p[i], 2); }
static void line(const char *k, u64 v) { puts_(k); putc_(' '); put_dec(v); putc_('\n'); }
static __attribute__((noreturn)) void exit_(u8 code) {
    outb(0xf4, code);
    for (;;) __asm__ volatile("cli; hlt");
}
static void fail(const char *why) { puts_("fail "); puts_(why); putc_('\n'); exit_(0x3f); }

/* --- command line -------------------------------------------------------- */
static const char *cmdline;
static int starts(const char *s, const char *p) {
    while (*p) if (*s++ != *p++) return 0;
    return 1;
}
/* Whether s starts with the whole word w (then a space or the end). */
static int is_word(const char *s, const char *w) {
    while (*w) if (*s++ != *w++) return 0;
    return *s == ' ' || *s == 0;
}
/* The value of "key=" on the command line, or 0. */
static const char *param(const char *key, const char *from) {
    for (const char *s = from; *s; s++)
        if ((s == cmdline || s[-1] == ' ') && starts(s, key)) {
            while (*key) { key++; s++; }
            return s;
        }
    return 0;
}
static u64 parse_num(const char **sp) {
    const char *s = *sp;
    u64 v = 0;
    if (s[0] == '0' && s[1] == 'x') {
        for (s += 2;; s++) {
            char c = *s;
            if (c >= '0' && c <= '9') v = v * 16 + (u64)(c - '0');
            else if (c >= 'a' && c <= 'f') v = v * 16 + (u64)(c - 'a' + 10);
            else break;
        }
    } else {
        for (; *s >= '0' && *s <= '9'; s++) v = v * 10 + (u64)(*s - '0');
    }
    *sp = s;
    return v;
}

/* --- interrupts ------------------------------------------------------------ */
#define IOAPIC 0xfec00000ull
#define LAPIC 0xfee00000ull
struct gate { u16 off0, sel; u8 ist, type; u16 off1; u32 off2, zero; } __attribute__((packed));
static struct gate idt[256] __attribute__((aligned(16)));
static volatile u32 irq_count;
static u64 irq_device; /* the window whose interrupt the handler acknowledges */

struct iframe;
__attribute__((interrupt)) static void irq_handler(struct iframe *f) {
    (void)f;
    u32 isr = mmio_read(irq_device + 0x60);
    mmio_write(irq_device + 0x64, isr);
    irq_count++;
    mmio_write(LAPIC + 0xb0, 0); /* EOI */
}

static void ioapic_route(u32 pin, u8 vector) {
    mmio_write(IOAPIC, 0x10 + 2 * pin + 1);
    mmio_write(IOAPIC + 0x10, 0); /* destination APIC ID 0 */
    mmio_write(IOAPIC, 0x10 + 2 * pin);
    mmio_write(IOAPIC + 0x10, vector); /* fixed, physical, active high, edge, unmasked */
}

static void interrupts_init(void) {
    u16 cs;
    __asm__ volatile("mov %%cs, %0" : "=r"(cs));
    u64 h = (u64)irq_handler;
    for (int v = 0x40; v < 0x50; v++) {
        idt[v] = (struct gate){(u16)h, cs, 0, 0x8e, (u16)(h >> 16), (u32)(h >> 32), 0};
    }
    struct { u16 limit; u64 base; } __attribute__((packed)) d = {sizeof(idt) - 1, (u64)idt};
    __asm__ volatile("lidt %0" ::"m"(d));
    outb(0x21, 0xff); /* mask both 8259s: the IOAPIC delivers */
    outb(0xa1, 0xff);
    mmio_write(LAPIC + 0xf0, 0x1ff); /* spurious vector 0xff, APIC enabled */
}

/* --- virtio-mmio ------------------------------------------------------------ */
#define QSZ 32
struct desc { u64 addr; u32 len; u16 flags, next; };
struct avail { u16 flags, idx, ring[QSZ], used_event; };
struct used_elem { u32 id, len; };
struct used { u16 flags, idx; struct used_elem ring[QSZ]; u16 avail_event; };
struct vq {
    struct desc desc[QSZ] __attribute__((aligned(16)));
    struct avail avail __attribute__((aligned(2)));
    struct used used __attribute__((aligned(4096)));
    u16 next_avail, last_used;
} __attribute__((aligned(4096)));

struct dev { u64 base; u32 gsi, type; int slot; struct vq q[2]; };
static struct dev devs[4];
static int ndevs;

#define S_ACK 1
#define S_DRIVER 2
#define S_DRIVER_OK 4
#define S_FEATURES_OK 8
#define S_NEEDS_RESET 64

static void find_devices(void) {
    const char *s = cmdline;
    while ((s = param("virtio_mmio.device=", s)) && ndevs < 4) {
        /* <size>@: "4K" from vmm-bin, "512" from QEMU's microvm. */
        u64 size = parse_num(&s);
        if (*s == 'K') { size <<= 10; s++; }
        if (*s++ != '@' || size < 0x100) fail("bad virtio_mmio.device size");
        u64 base = parse_num(&s);
        if (*s++ != ':') fail("no :<irq> in virtio_mmio.device");
        u32 gsi = (u32)parse_num(&s);
        struct dev *d = &devs[ndevs];
        d->base = base;
        d->gsi = gsi;
        d->slot = ndevs;
        if (mmio_read(base) != 0x74726976) fail("bad magic");
        if (mmio_read(base + 4) != 2) fail("not a version 2 device");
        d->type = mmio_read(base + 8);
        puts_("device "); put_dec((u64)ndevs); puts_(" type "); put_dec(d->type);
        puts_(" at 0x"); put_hex(base, 8); puts_(" gsi "); put_dec(gsi); putc_('\n');
        ndevs++;
    }
}

static struct dev *device(u32 type) {
    for (int i = 0; i < ndevs; i++) if (devs[i].type == type) return &devs[i];
    fail("device type not on the command line");
    return 0;
}

static u64 features(struct dev *d) {
    mmio_write(d->base + 0x14, 0);
    u64 lo = mmio_read(d->base + 0x10);
    mmio_write(d->base + 0x14, 1);
    return lo | ((u64)mmio_read(d->base + 0x10) << 32);
}

/* Steps 1-6 of 3.1.1; returns the accepted features. */
static u64 negotiate(struct dev *d, u64 want) {
    u64 b = d->base;
    mmio_write(b + 0x70, 0);
    mmio_write(b + 0x70, S_ACK);
    mmio_write(b + 0x70, S_ACK | S_DRIVER);
    u64 f = features(d) & (want | (1ull << 32));
    if (!(f & (1ull << 32))) fail("no VERSION_1");
    mmio_write(b + 0x24, 0); mmio_write(b + 0x20, (u32)f);
    mmio_write(b + 0x24, 1); mmio_write(b + 0x20, (u32)(f >> 32));
    mmio_write(b + 0x70, S_ACK | S_DRIVER | S_FEATURES_OK);
    if (!(mmio_read(b + 0x70) & S_FEATURES_OK)) fail("FEATURES_OK refused");
    return f;
}

static void setup_queue(struct dev *d, u32 i, u32 size) {
    u64 b = d->base;
    struct vq *q = &d->q[i];
    memset(q, 0, sizeof(*q));
    mmio_write(b + 0x30, i);
    if (mmio_read(b + 0x44)) fail("queue already ready");
    u32 max = mmio_read(b + 0x34);
    if (max == 0) fail("queue not available");
    if (size > max && size <= QSZ) size = max;
    mmio_write(b + 0x38, size);
    u64 a[3] = {(u64)q->desc, (u64)&q->avail, (u64)&q->used};
    for (int r = 0; r < 3; r++) {
        mmio_write(b + 0x80 + 0x10 * r, (u32)a[r]);
        mmio_write(b + 0x84 + 0x10 * r, (u32)(a[r] >> 32));
    }
    mmio_write(b + 0x44, 1);
}

static u32 driver_ok(struct dev *d) {
    u64 b = d->base;
    irq_device = b;
    ioapic_route(d->gsi, (u8)(0x40 + d->slot));
    mmio_write(b + 0x70, mmio_read(b + 0x70) | S_DRIVER_OK);
    return mmio_read(b + 0x70);
}

static void init(struct dev *d, u64 want, int nqueues) {
    negotiate(d, want);
    for (int i = 0; i < nqueues; i++) setup_queue(d, (u32)i, QSZ);
    if (driver_ok(d) & S_NEEDS_RESET) fail("device needs reset after DRIVER_OK");
}

/* Puts a chain of n buffers on queue qi (flags per buffer: 2 = writable). */
struct buf { void *p; u32 len; u16 flags; };
static void submit(struct dev *d, int qi, struct buf *bufs, int n) {
    struct vq *q = &d->q[qi];
    u16 head = (u16)(q->next_avail % QSZ * 0); /* one chain in flight: always from 0 */
    for (int i = 0; i < n; i++) {
        q->desc[i].addr = (u64)bufs[i].p;
        q->desc[i].len = bufs[i].len;
        q->desc[i].flags = (u16)(bufs[i].flags | (i + 1 < n ? 1 : 0));
        q->desc[i].next = (u16)(i + 1);
    }
    q->avail.ring[q->next_avail % QSZ] = head;
    barrier();
    q->next_avail++;
    q->avail.idx = q->next_avail;
    barrier();
    mmio_write(d->base + 0x50, (u32)qi);
}

/* Waits (hlt) for the device's interrupt and a new used entry; returns its len. */
static u32 wait_used(struct dev *d, int qi) {
    struct vq *q = &d->q[qi];
    irq_device = d->base;
    for (;;) {
        __asm__ volatile("cli");
        barrier();
        if (*(volatile u16 *)&q->used.idx != q->last_used) break;
        __asm__ volatile("sti; hlt");
    }
    __asm__ volatile("sti");
    u32 len = q->used.ring[q->last_used % QSZ].len;
    q->last_used++;
    return len;
}

/* --- tests ------------------------------------------------------------------- */
static u8 buf[4096] __attribute__((aligned(4096)));
static u8 buf2[4096] __attribute__((aligned(4096)));

static void test_rng(void) {
    struct dev *d = device(4);
    init(d, 0, 1);
    for (int r = 0; r < 2; r++) {
        memset(buf, 0, 64);
        struct buf b = {buf, 32, 2};
        submit(d, 0, &b, 1);
        u32 n = wait_used(d, 0);
        puts_("rng "); put_dec(n); putc_(' '); put_bytes_hex(buf, 32); putc_('\n');
    }
    line("irqs", irq_count);
}

struct blk_req { u32 type, reserved; u64 sector; };
static struct blk_req hdr;
static u8 status;
static u32 blk_used; /* the used length of the last request */

/* One block request; returns the status byte (0xee if none was written). */
static u8 blk(struct dev *d, u32 type, u64 sector, void *data, u32 len, int writable) {
    hdr.type = type;
    hdr.reserved = 0;
    hdr.sector = sector;
    status = 0xee;
    struct buf b[3] = {{&hdr, 16, 0}, {data, len, (u16)(writable ? 2 : 0)}, {&status, 1, 2}};
    if (len) {
        submit(d, 0, b, 3);
    } else {
        b[1] = b[2];
        submit(d, 0, b, 2);
    }
    blk_used = wait_used(d, 0);
    return status;
}

/* "<name>-status S" and "<name>-used N" for one request. */
static void blk_line(const char *name, u8 st) {
    puts_(name); puts_("-status "); put_dec(st); putc_('\n');
    puts_(name); puts_("-used "); put_dec(blk_used); putc_('\n');
}

#define BLK_F_RO (1ull << 5)
#define BLK_F_BLK_SIZE (1ull << 6)
#define BLK_F_SEG_MAX (1ull << 2)
#define BLK_F_FLUSH (1ull << 9)
#define BLK_F_DISCARD (1ull << 13)
#define BLK_F_WRITE_ZEROES (1ull << 14)

/* Initialises the disk with the features a driver would take. */
static struct dev *blk_init(void) {
    struct dev *d = device(2);
    u64 f = features(d);
    line("features-ro", (f >> 5) & 1);
    line("features-flush", (f >> 9) & 1);
    line("features-discard", (f >> 13) & 1);
    line("features-write-zeroes", (f >> 14) & 1);
    init(d, BLK_F_FLUSH | BLK_F_BLK_SIZE | BLK_F_SEG_MAX | BLK_F_RO, 1);
    return d;
}

static u64 blk_capacity(struct dev *d) {
    return mmio_read(d->base + 0x100) | ((u64)mmio_read(d->base + 0x104) << 32);
}

static void test_blk(void) {
    struct dev *d = blk_init();
    u64 cap = blk_capacity(d);
    line("capacity", cap);
    line("seg_max", mmio_read(d->base + 0x100 + 12));
    line("blk_size", mmio_read(d->base + 0x100 + 20));
    memset(buf, 0, 512);
    blk_line("get-id", blk(d, 8, 0, buf, 20, 1));
    puts_("id "); puts_((char *)buf); putc_('\n');
    memset(buf, 0, 512);
    blk_line("read0", blk(d, 0, 0, buf, 512, 1));
    buf[31] = 0;
    puts_("sector0 "); puts_((char *)buf); putc_('\n');
    memcpy(buf2, "written by the guest, sector 1", 31);
    memset(buf2 + 31, 0x5a, 512 - 31);
    blk_line("write1", blk(d, 1, 1, buf2, 512, 0));
    blk_line("flush", blk(d, 4, 0, 0, 0, 0));
    memset(buf, 0, 512);
    blk_line("read1", blk(d, 0, 1, buf, 512, 1));
    int same = 1;
    for (int i = 0; i < 512; i++) if (buf[i] != buf2[i]) same = 0;
    line("read1-matches", (u64)same);
    memset(buf, 0xaa, 1024);
    blk_line("oob", blk(d, 0, cap, buf, 512, 1));
    blk_line("oob-straddle", blk(d, 0, cap - 1, buf, 1024, 1));
    int untouched = 1;
    for (int i = 0; i < 1024; i++) if (buf[i] != 0xaa) untouched = 0;
    line("oob-untouched", (u64)untouched);
    blk_line("unsupported", blk(d, 0x7777, 0, buf, 512, 1));
    line("irqs", irq_count);
}

/* Writes sector 2 (acknowledged, not flushed), says so, then waits
   forever: the host stops the VMM with a signal and checks the file. */
static void test_blk_write_spin(void) {
    struct dev *d = blk_init();
    memcpy(buf2, "durable after SIGTERM, sector 2", 32);
    memset(buf2 + 32, 0x3c, 512 - 32);
    blk_line("write2", blk(d, 1, 2, buf2, 512, 0));
    puts_("waiting for the host\n");
    for (;;) __asm__ volatile("cli; hlt");
}

/* Throughput: vtest-count=N 64 KiB reads, 8 in flight, spread over the
   disk. No clock in the guest: the host times whole runs of different N. */
#define BENCH_DEPTH 8
#define BENCH_LEN 65536
static u8 bench_buf[BENCH_DEPTH][BENCH_LEN] __attribute__((aligned(4096)));
static struct blk_req bench_hdr[BENCH_DEPTH];
static u8 bench_status[BENCH_DEPTH];

static void bench_post(struct dev *d, int k, u64 sector) {
    struct vq *q = &d->q[0];
    u16 h = (u16)(3 * k);
    bench_hdr[k] = (struct blk_req){0, 0, sector};
    bench_status[k] = 0xee;
    q->desc[h] = (struct desc){(u64)&bench_hdr[k], 16, 1, (u16)(h + 1)};
    q->desc[h + 1] = (struct desc){(u64)bench_buf[k], BENCH_LEN, 3, (u16)(h + 2)};
    q->desc[h + 2] = (struct desc){(u64)&bench_status[k], 1, 2, 0};
    q->avail.ring[q->next_avail % QSZ] = h;
    barrier();
    q->next_avail++;
    q->avail.idx = q->next_avail;
}

static void test_blk_bench(void) {
    struct dev *d = device(2);
    init(d, BLK_F_FLUSH | BLK_F_BLK_SIZE | BLK_F_SEG_MAX, 1);
    const char *c = param("vtest-count=", cmdline);
    u64 count = c ? parse_num(&c) : 1000;
    u64 blocks = blk_capacity(d) / (BENCH_LEN / 512);
    if (blocks == 0) fail("disk smaller than one bench block");
    struct vq *q = &d->q[0];
    u64 submitted = 0, completed = 0, errors = 0;
    for (int k = 0; k < BENCH_DEPTH && submitted < count; k++, submitted++)
        bench_post(d, k, (submitted * 7 % blocks) * (BENCH_LEN / 512));
    barrier();
    mmio_write(d->base + 0x50, 0);
    irq_device = d->base;
    while (completed < count) {
        __asm__ volatile("cli");
        barrier();
        if (*(volatile u16 *)&q->used.idx == q->last_used) {
            __asm__ volatile("sti; hlt");
            continue;
        }
        __asm__ volatile("sti");
        int posted = 0;
        while (*(volatile u16 *)&q->used.idx != q->last_used) {
            u32 id = q->used.ring[q->last_used % QSZ].id;
            q->last_used++;
            int k = (int)(id / 3);
            if (bench_status[k] != 0) errors++;
            completed++;
            if (submitted < count) {
                bench_post(d, k, (submitted * 7 % blocks) * (BENCH_LEN / 512));
                submitted++;
                posted = 1;
            }
        }
        barrier();
        if (posted) mmio_write(d->base + 0x50, 0);
    }
    line("bench-requests", completed);
    line("bench-errors", errors);
    line("bench-bytes", completed * BENCH_LEN);
}

static void test_console(void) {
    struct dev *d = device(3);
    init(d, 0, 2);
    static const char msg[] = "hello from hvc0\n";
    memcpy(buf2, msg, sizeof(msg) - 1);
    struct buf out = {buf2, sizeof(msg) - 1, 0};
    submit(d, 1, &out, 1);
    line("tx-used", wait_used(d, 1));
    const char *want = param("vtest-input=", cmdline);
    if (want) {
        /* Receive until the expected bytes have arrived. */
        u32 need = 0, got = 0;
        while (want[need] && want[need] != ' ') need++;
        while (got < need) {
            struct buf in = {buf + got, 64, 2};
            submit(d, 0, &in, 1);
            got += wait_used(d, 0);
        }
        buf[got] = 0;
        puts_("rx "); puts_((char *)buf); putc_('\n');
    }
    line("irqs", irq_count);
}

/* Driver mistakes: the device must refuse or flag them, never hang. */
static void test_hostile(void) {
    struct dev *d = device(2);
    /* A queue size that is not a power of two. */
    negotiate(d, 0);
    setup_queue(d, 0, QSZ);
    mmio_write(d->base + 0x38, 3);
    line("bad-size-needs-reset", (driver_ok(d) & S_NEEDS_RESET) != 0);
    /* Features the device never offered: FEATURES_OK refused. */
    u64 b = d->base;
    mmio_write(b + 0x70, 0);
    mmio_write(b + 0x70, S_ACK | S_DRIVER);
    mmio_write(b + 0x24, 1);
    mmio_write(b + 0x20, 1 | (1u << 30));
    mmio_write(b + 0x70, S_ACK | S_DRIVER | S_FEATURES_OK);
    line("unoffered-features-ok", (mmio_read(b + 0x70) & S_FEATURES_OK) != 0);
    /* A good set-up, then a buffer beyond the end of RAM. */
    init(d, 0, 1);
    struct vq *q = &d->q[0];
    hdr.type = 0; hdr.sector = 0; status = 0xee;
    struct buf bad[3] = {{&hdr, 16, 0}, {(void *)0x7fff0000000ull, 512, 2}, {&status, 1, 2}};
    submit(d, 0, bad, 3);
    /* Either the request fails or the device asks for a reset. */
    for (;;) {
        if (*(volatile u16 *)&q->used.idx != q->last_used) { line("beyond-ram-status", status); q->last_used++; break; }
        if (mmio_read(b + 0x70) & S_NEEDS_RESET) { line("beyond-ram-needs-reset", 1); break; }
        __asm__ volatile("pause");
    }
    /* A descriptor loop. */
    init(d, 0, 1);
    q->desc[0] = (struct desc){(u64)&hdr, 16, 1, 1};
    q->desc[1] = (struct desc){(u64)buf, 512, 3, 0}; /* writable, NEXT back to 0 */
    q->avail.ring[0] = 0;
    barrier();
    q->avail.idx = 1;
    q->next_avail = 1;
    mmio_write(b + 0x50, 0);
    for (;;) {
        if (*(volatile u16 *)&q->used.idx != q->last_used) { line("loop-used", 1); q->last_used++; break; }
        if (mmio_read(b + 0x70) & S_NEEDS_RESET) { line("loop-needs-reset", 1); break; }
        __asm__ volatile("pause");
    }
    /* Notifying a queue that does not exist, then the device still works. */
    init(d, 0, 1);
    mmio_write(b + 0x50, 5);
    line("after-read-status", blk(d, 0, 0, buf, 512, 1));
}

static void run(void);

/* The vmlinux entry: the command line's address is in the zero page. */
void main(u8 *zero_page) {
    cmdline = (const char *)(u64)*(u32 *)(zero_page + 0x228);
    run();
}

#ifdef PVH
/* The PVH entry: hvm_start_info's cmdline_paddr (offset 24). */
void pvh_main(u32 start_info) {
    u8 *si = (u8 *)(u64)start_info;
    if (*(u32 *)si != 0x336ec578) fail("bad hvm_start_info magic");
    cmdline = (const char *)*(u64 *)(si + 24);
    puts_("boot pvh\n");
    run();
}
#endif

static void run(void) {
    interrupts_init();
    find_devices();
    const char *t = param("vtest=", cmdline);
    if (!t) fail("no vtest= on the command line");
    if (is_word(t, "rng")) test_rng();
    else if (is_word(t, "blk")) test_blk();
    else if (is_word(t, "blk-write-spin")) test_blk_write_spin();
    else if (is_word(t, "blk-bench")) test_blk_bench();
    else if (is_word(t, "console")) test_console();
    else if (is_word(t, "hostile")) test_hostile();
    else fail("unknown vtest");
    puts_("done\n");
    exit_(0);
}
