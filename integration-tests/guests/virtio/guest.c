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

struct dev { u64 base; u32 gsi, type; int slot; struct vq q[3]; };
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
/* Makes one chain available; notifies the device unless quiet. */
static void submit_to(struct dev *d, int qi, struct buf *bufs, int n, int quiet) {
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
    if (!quiet) mmio_write(d->base + 0x50, (u32)qi);
}
static void submit(struct dev *d, int qi, struct buf *bufs, int n) { submit_to(d, qi, bufs, n, 0); }

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

static u64 blk_features; /* what blk_init negotiated */

/* Initialises the disk with the features a driver would take. */
static struct dev *blk_init(void) {
    struct dev *d = device(2);
    u64 f = features(d);
    line("features-ro", (f >> 5) & 1);
    line("features-flush", (f >> 9) & 1);
    line("features-discard", (f >> 13) & 1);
    line("features-write-zeroes", (f >> 14) & 1);
    blk_features = negotiate(d, BLK_F_FLUSH | BLK_F_BLK_SIZE | BLK_F_SEG_MAX | BLK_F_RO |
                                    BLK_F_WRITE_ZEROES);
    setup_queue(d, 0, QSZ);
    if (driver_ok(d) & S_NEEDS_RESET) fail("device needs reset after DRIVER_OK");
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
    /* WRITE_ZEROES of sectors 8-15 (one 4 KiB block), when offered. */
    if (blk_features & BLK_F_WRITE_ZEROES) {
        static struct { u64 sector; u32 num_sectors, flags; } range = {8, 8, 0};
        blk_line("write-zeroes", blk(d, 13, 0, &range, 16, 0));
        memset(buf, 0x77, 4096);
        blk_line("read8", blk(d, 0, 8, buf, 4096, 1));
        int zero = 1;
        for (int i = 0; i < 4096; i++) if (buf[i] != 0) zero = 0;
        line("zeroed", (u64)zero);
    } else {
        puts_("write-zeroes-status none\n");
    }
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

/* For snapshot tests: a write to sector 3 made available without a notify
   (as a notify the device drops while the VMM pauses), said so, then
   waited for: the host snapshots the VM while it waits and restores it in
   a new VMM, which must serve it. Then vtest-rounds=N write and read-back
   rounds on sectors 4-11 (the queue goes on from where it was). */
static void test_blk_snap(void) {
    struct dev *d = blk_init();
    memcpy(buf2, "made available before the snapshot", 35);
    memset(buf2 + 35, 0x6b, 512 - 35);
    hdr = (struct blk_req){1, 0, 3};
    status = 0xee;
    struct buf b[3] = {{&hdr, 16, 0}, {buf2, 512, 0}, {&status, 1, 2}};
    submit_to(d, 0, b, 3, 1);
    puts_("posted-unnotified\n");
    blk_used = wait_used(d, 0);
    blk_line("unnotified", status);
    const char *c = param("vtest-rounds=", cmdline);
    u64 rounds = c ? parse_num(&c) : 16;
    u64 bad = 0;
    for (u64 i = 0; i < rounds; i++) {
        u64 sector = 4 + i % 8;
        memset(buf2, (int)(i + 1), 512);
        if (blk(d, 1, sector, buf2, 512, 0) != 0) bad++;
        memset(buf, 0, 512);
        if (blk(d, 0, sector, buf, 512, 1) != 0) bad++;
        for (int k = 0; k < 512; k++)
            if (buf[k] != (u8)(i + 1)) { bad++; break; }
    }
    line("rounds", rounds);
    line("round-errors", bad);
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
    line("bench-irqs", irq_count);
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

/* --- network: ARP and ping through virtio-net ------------------------------- */
#define NET_HDR 12 /* virtio_net_hdr_v1 */
#define ETH_ARP 0x0806
#define ETH_IP 0x0800
static u8 my_mac[6], peer_mac[6];
static const u8 my_ip[4] = {10, 0, 2, 15}, host_ip[4] = {10, 0, 2, 1};
static u16 be16(const u8 *p) { return (u16)(p[0] << 8 | p[1]); }
static void put_be16(u8 *p, u16 v) { p[0] = (u8)(v >> 8); p[1] = (u8)v; }
static int same(const u8 *a, const u8 *b, int n) {
    for (int i = 0; i < n; i++) if (a[i] != b[i]) return 0;
    return 1;
}
/* The Internet checksum (RFC 1071) of n bytes; 0 over a header that holds its own. */
static u16 inet_csum(const u8 *p, int n) {
    u32 s = 0;
    for (int i = 0; i + 1 < n; i += 2) s += be16(p + i);
    if (n & 1) s += (u32)p[n - 1] << 8;
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    return (u16)~s;
}
static void put_mac(const char *k, const u8 *m) {
    puts_(k); putc_(' ');
    for (int i = 0; i < 6; i++) { if (i) putc_(':'); put_hex(m[i], 2); }
    putc_('\n');
}

/* Sends the frame of len bytes at buf2 + NET_HDR (header zeroed: no offloads). */
static void net_send(struct dev *d, u32 len) {
    memset(buf2, 0, NET_HDR);
    struct buf b = {buf2, NET_HDR + len, 0};
    submit(d, 1, &b, 1);
    if (wait_used(d, 1) != 0) fail("transmit used length not 0");
}
/* Receives one frame into buf + NET_HDR; returns its length. */
static u32 net_recv(struct dev *d) {
    memset(buf, 0, NET_HDR);
    struct buf b = {buf, 2048, 2};
    submit(d, 0, &b, 1);
    u32 n = wait_used(d, 0);
    if (n < NET_HDR + 14) fail("received frame shorter than header + Ethernet");
    return n - NET_HDR;
}
static u8 *eth(u8 *f, const u8 *dst, u16 type) {
    memcpy(f, dst, 6);
    memcpy(f + 6, my_mac, 6);
    put_be16(f + 12, type);
    return f + 14;
}
/* An ARP packet (op 1 request, 2 reply) from us to tha/tpa. */
static void arp(struct dev *d, u16 op, const u8 *dst, const u8 *tha, const u8 *tpa) {
    u8 *a = eth(buf2 + NET_HDR, dst, ETH_ARP);
    put_be16(a, 1); put_be16(a + 2, ETH_IP); a[4] = 6; a[5] = 4; put_be16(a + 6, op);
    memcpy(a + 8, my_mac, 6); memcpy(a + 14, my_ip, 4);
    memcpy(a + 18, tha, 6); memcpy(a + 24, tpa, 4);
    net_send(d, 14 + 28);
}
/* Answers an ARP request for our address (the host may ask before replying). */
static int answer_arp(struct dev *d, u8 *f) {
    u8 *a = f + 14;
    if (be16(f + 12) != ETH_ARP || be16(a + 6) != 1 || !same(a + 24, my_ip, 4)) return 0;
    arp(d, 2, a + 8, a + 8, a + 14);
    puts_("arp-answered\n");
    return 1;
}

#define PING_ID 0x1234
#define PING_SEQ 7
#define PING_LEN 32
static void test_net(void) {
    struct dev *d = device(1);
    u64 offered = features(d);
    puts_("net-features "); put_hex(offered, 16); putc_('\n');
    /* MAC, MRG_RXBUF, STATUS; with vtest-offloads=1 also CSUM, GUEST_CSUM,
     * GUEST_TSO4/6 (the device then sets the tap's offloads). */
    u64 want = (1ull << 5) | (1ull << 15) | (1ull << 16);
    const char *off = param("vtest-offloads=", cmdline);
    if (off && off[0] == '1') want |= (1ull << 0) | (1ull << 1) | (1ull << 7) | (1ull << 8);
    u64 f = negotiate(d, want);
    puts_("net-accepted "); put_hex(f, 16); putc_('\n');
    for (int i = 0; i < 2; i++) setup_queue(d, (u32)i, QSZ);
    if (driver_ok(d) & S_NEEDS_RESET) fail("device needs reset after DRIVER_OK");
    for (int i = 0; i < 6; i++) my_mac[i] = mmio_read8(d->base + 0x100 + (u64)i);
    put_mac("mac", my_mac);
    line("status", (u64)(mmio_read8(d->base + 0x106) | mmio_read8(d->base + 0x107) << 8));

    /* ARP: who has 10.0.2.1? Other frames (IPv6 from the host) are skipped. */
    static const u8 bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, zero[6] = {0};
    arp(d, 1, bcast, zero, host_ip);
    int got = 0;
    for (int i = 0; i < 32 && !got; i++) {
        u32 n = net_recv(d);
        u8 *fr = buf + NET_HDR, *a = fr + 14;
        if (be16(fr + 12) == ETH_ARP && n >= 42 && be16(a + 6) == 2 && same(a + 14, host_ip, 4)) {
            memcpy(peer_mac, a + 8, 6);
            got = 1;
            puts_("arp-hdr "); put_dec(buf[0]); putc_(' '); put_dec(buf[1]); putc_(' ');
            put_dec((u64)(buf[10] | buf[11] << 8)); putc_('\n');
        } else if (!answer_arp(d, fr)) {
            puts_("rx-skipped "); put_hex(be16(fr + 12), 4); putc_('\n');
        }
    }
    if (!got) fail("no ARP reply from 10.0.2.1");
    put_mac("peer-mac", peer_mac);

    /* ICMP echo request to 10.0.2.1, checksums computed here. */
    u8 *ip = eth(buf2 + NET_HDR, peer_mac, ETH_IP);
    memset(ip, 0, 20);
    ip[0] = 0x45; put_be16(ip + 2, 20 + 8 + PING_LEN); put_be16(ip + 4, 0x4242);
    put_be16(ip + 6, 0x4000); ip[8] = 64; ip[9] = 1;
    memcpy(ip + 12, my_ip, 4); memcpy(ip + 16, host_ip, 4);
    put_be16(ip + 10, inet_csum(ip, 20));
    u8 *icmp = ip + 20;
    icmp[0] = 8; icmp[1] = 0; put_be16(icmp + 2, 0); put_be16(icmp + 4, PING_ID); put_be16(icmp + 6, PING_SEQ);
    for (int i = 0; i < PING_LEN; i++) icmp[8 + i] = (u8)(0x30 + i);
    put_be16(icmp + 2, inet_csum(icmp, 8 + PING_LEN));
    net_send(d, 14 + 20 + 8 + PING_LEN);
    got = 0;
    for (int i = 0; i < 32 && !got; i++) {
        u32 n = net_recv(d);
        u8 *fr = buf + NET_HDR, *rip = fr + 14, *ric = rip + 20;
        if (be16(fr + 12) == ETH_IP && n >= 14 + 20 + 8 + PING_LEN && rip[0] == 0x45 && rip[9] == 1 &&
            same(rip + 12, host_ip, 4) && same(rip + 16, my_ip, 4) && ric[0] == 0) {
            got = 1;
            int ok = 1, icmp_len = (int)be16(rip + 2) - 20;
            if (icmp_len > (int)n - 34) icmp_len = (int)n - 34;
            for (int j = 0; j < PING_LEN; j++) if (ric[8 + j] != (u8)(0x30 + j)) ok = 0;
            puts_("ping-reply id "); put_dec(be16(ric + 4)); puts_(" seq "); put_dec(be16(ric + 6));
            puts_(" payload-ok "); put_dec((u64)ok);
            puts_(" ip-csum-ok "); put_dec(inet_csum(rip, 20) == 0);
            puts_(" icmp-csum-ok "); put_dec(inet_csum(ric, icmp_len) == 0);
            putc_('\n');
        } else if (!answer_arp(d, fr)) {
            puts_("rx-skipped "); put_hex(be16(fr + 12), 4); putc_('\n');
        }
    }
    if (!got) fail("no echo reply from 10.0.2.1");
    line("irqs", irq_count);
}

/* --- vsock (virtio 1.2 section 5.10) ------------------------------------------- */
struct vs_hdr {
    u64 src_cid, dst_cid;
    u32 src_port, dst_port, len;
    u16 type, op;
    u32 flags, buf_alloc, fwd_cnt;
} __attribute__((packed));
#define VS_REQUEST 1
#define VS_RESPONSE 2
#define VS_RST 3
#define VS_SHUTDOWN 4
#define VS_RW 5
#define VS_CREDIT_UPDATE 6
#define VS_CREDIT_REQUEST 7
#define VS_RX_DATA 1024  /* payload room of each receive buffer */
#define VS_BUF_ALLOC 4096 /* the guest's receive buffer per connection */
#define VS_CREDIT_BYTES 16384
struct vs_rxbuf { struct vs_hdr h; u8 data[VS_RX_DATA]; } __attribute__((packed));
static struct vs_rxbuf vs_rx[QSZ];
static struct vs_hdr vs_txh;
static u8 vs_txd[64];
static u64 vs_cid;

/* One guest connection: its ports and credit counters (5.10.6.3). */
struct vs_conn {
    u32 port, peer_port;
    u32 rx_total, fwd_cnt, fwd_sent, max_out;
    int open;
};

/* Receive buffer i: one device-writable descriptor for header and payload. */
static void vs_post_rx(struct dev *d, u16 i) {
    struct vq *q = &d->q[0];
    q->desc[i] = (struct desc){(u64)&vs_rx[i], sizeof(vs_rx[i]), 2, 0};
    q->avail.ring[q->next_avail % QSZ] = i;
    barrier();
    q->next_avail++;
    q->avail.idx = q->next_avail;
    barrier();
    mmio_write(d->base + 0x50, 0);
}

/* Waits for the next received packet; returns its buffer's index. */
static u16 vs_recv(struct dev *d) {
    struct vq *q = &d->q[0];
    irq_device = d->base;
    for (;;) {
        __asm__ volatile("cli");
        barrier();
        if (*(volatile u16 *)&q->used.idx != q->last_used) break;
        __asm__ volatile("sti; hlt");
    }
    __asm__ volatile("sti");
    u16 id = (u16)q->used.ring[q->last_used % QSZ].id;
    q->last_used++;
    if (id >= QSZ) fail("vsock: used id out of range");
    return id;
}

/* Sends one packet on connection c (its credit in every header) and waits
   until the device has taken it. */
static void vs_send(struct dev *d, struct vs_conn *c, u16 op, u32 flags, const void *data, u32 len) {
    vs_txh = (struct vs_hdr){vs_cid, 2, c->port, c->peer_port, len, 1, op, flags, VS_BUF_ALLOC, c->fwd_cnt};
    c->fwd_sent = c->fwd_cnt;
    if (len > sizeof(vs_txd)) fail("vsock: payload too long");
    memcpy(vs_txd, data, len);
    struct buf b[2] = {{&vs_txh, sizeof(vs_txh), 0}, {vs_txd, len, 0}};
    submit(d, 1, b, len ? 2 : 1);
    if (wait_used(d, 1) != 0) fail("vsock: tx used length not 0");
}

/* Refuses a REQUEST: RST with the addresses swapped. */
static void vs_refuse(struct dev *d, struct vs_hdr *h) {
    struct vs_conn c = {h->dst_port, h->src_port, 0, 0, 0, 0, 0};
    vs_send(d, &c, VS_RST, 0, 0, 0);
}

/* The next packet for guest port `port` (others are ignored); copies its
   header to *h and payload to out[0..63]. */
static void vs_wait(struct dev *d, u32 port, struct vs_hdr *h, u8 *out) {
    for (;;) {
        u16 id = vs_recv(d);
        *h = vs_rx[id].h;
        if (h->len > VS_RX_DATA) fail("vsock: len beyond the buffer");
        memcpy(out, vs_rx[id].data, h->len < 63 ? h->len : 63);
        vs_post_rx(d, id);
        if (h->dst_port == port && h->dst_cid == vs_cid && h->src_cid == 2) return;
    }
}

static void put_data(const u8 *p, u32 n) { for (u32 i = 0; i < n; i++) putc_((char)p[i]); }

static struct vs_conn vs_echo, vs_credit;
static u8 vs_msg[64];

/* Host-initiated connections: port 1234 echoes uppercased, port 1235 takes
   VS_CREDIT_BYTES with a VS_BUF_ALLOC buffer, any other port is refused.
   Returns when both connections have ended and one was refused. */
static void vs_serve_host(struct dev *d) {
    int ended = 0, refused = 0;
    u32 echo_len = 0, pos = 0, order_ok = 1, violations = 0;
    while (ended < 2 || !refused) {
        u16 id = vs_recv(d);
        struct vs_hdr h = vs_rx[id].h;
        u8 *data = vs_rx[id].data;
        if (h.len > VS_RX_DATA) fail("vsock: len beyond the buffer");
        struct vs_conn *c = h.dst_port == 1234 ? &vs_echo : h.dst_port == 1235 ? &vs_credit : 0;
        if (h.src_cid != 2 || h.dst_cid != vs_cid) {
            fail("vsock: packet with wrong CIDs");
        } else if (h.op == VS_REQUEST && !c) {
            vs_refuse(d, &h);
            line("refused", h.dst_port);
            refused = 1;
        } else if (h.op == VS_REQUEST) {
            *c = (struct vs_conn){h.dst_port, h.src_port, 0, 0, 0, 0, 1};
            vs_send(d, c, VS_RESPONSE, 0, 0, 0);
            puts_("accepted "); put_dec(h.dst_port); puts_(" from "); put_dec(h.src_port); putc_('\n');
        } else if (c && c->open && h.src_port == c->peer_port) {
            if (h.op == VS_RW) {
                c->rx_total += h.len;
                u32 out = c->rx_total - c->fwd_sent;
                if (out > c->max_out) c->max_out = out;
                if (out > VS_BUF_ALLOC) violations++;
                if (c == &vs_echo) {
                    for (u32 i = 0; i < h.len && echo_len < sizeof(vs_msg); i++) vs_msg[echo_len++] = data[i];
                    c->fwd_cnt = c->rx_total;
                    if (echo_len >= 14) {
                        puts_("rx "); put_data(vs_msg, echo_len); putc_('\n');
                        for (u32 i = 0; i < echo_len; i++)
                            if (vs_msg[i] >= 'a' && vs_msg[i] <= 'z') vs_msg[i] = (u8)(vs_msg[i] - 32);
                        vs_send(d, c, VS_RW, 0, vs_msg, echo_len);
                        echo_len = 0;
                    }
                } else {
                    for (u32 i = 0; i < h.len; i++, pos++)
                        if (data[i] != (u8)(pos * 7 % 251)) order_ok = 0;
                    c->fwd_cnt = c->rx_total; /* consumed (credit returned below) */
                    if (c->rx_total == VS_CREDIT_BYTES) {
                        line("credit-bytes", c->rx_total);
                        line("credit-order-ok", order_ok);
                        line("credit-max-outstanding", c->max_out);
                        line("credit-violations", violations);
                    }
                }
            } else if (h.op == VS_CREDIT_REQUEST) {
                vs_send(d, c, VS_CREDIT_UPDATE, 0, 0, 0);
            } else if (h.op == VS_SHUTDOWN || h.op == VS_RST) {
                puts_("end "); put_dec(c->port);
                puts_(h.op == VS_RST ? " rst " : " shutdown "); put_dec(h.flags); putc_('\n');
                /* A shutdown of both ways is answered with the RST that ends
                   a clean disconnect (5.10.6.5). */
                if (h.op == VS_SHUTDOWN) vs_send(d, c, VS_RST, 0, 0, 0);
                c->open = 0;
                ended++;
            }
        }
        vs_post_rx(d, id);
        /* The space goes back to the device only once the whole buffer was
           filled and no packet is left in the used ring: the device must
           stop at the credit, and one that did not would be seen with more
           than VS_BUF_ALLOC outstanding. */
        struct vs_conn *cr = &vs_credit;
        if (cr->open && cr->fwd_cnt - cr->fwd_sent >= VS_BUF_ALLOC &&
            *(volatile u16 *)&d->q[0].used.idx == d->q[0].last_used)
            vs_send(d, cr, VS_CREDIT_UPDATE, 0, 0, 0);
    }
}

static void test_vsock(void) {
    struct dev *d = device(19);
    init(d, 0, 3);
    vs_cid = mmio_read(d->base + 0x100) | ((u64)mmio_read(d->base + 0x104) << 32);
    line("vsock-cid", vs_cid);
    for (u16 i = 0; i < QSZ; i++) vs_post_rx(d, i);
    puts_("listening 1234\n");
    vs_serve_host(d);
    /* Guest-initiated: a host port nobody listens on, then one that does. */
    struct vs_hdr h;
    struct vs_conn g = {49152, 5679, 0, 0, 0, 0, 1};
    vs_send(d, &g, VS_REQUEST, 0, 0, 0);
    vs_wait(d, g.port, &h, vs_msg);
    puts_("connect 5679 op "); put_dec(h.op); putc_('\n');
    g = (struct vs_conn){49153, 5678, 0, 0, 0, 0, 1};
    vs_send(d, &g, VS_REQUEST, 0, 0, 0);
    vs_wait(d, g.port, &h, vs_msg);
    puts_("connect 5678 op "); put_dec(h.op); putc_('\n');
    if (h.op != VS_RESPONSE) fail("vsock: no RESPONSE from the host");
    static const char hello[] = "hello from guest";
    vs_send(d, &g, VS_RW, 0, hello, sizeof(hello) - 1);
    do vs_wait(d, g.port, &h, vs_msg); while (h.op == VS_CREDIT_UPDATE);
    if (h.op != VS_RW) fail("vsock: no reply");
    puts_("reply "); put_data(vs_msg, h.len); putc_('\n');
    g.fwd_cnt += h.len;
    vs_send(d, &g, VS_SHUTDOWN, 3, 0, 0);
    do vs_wait(d, g.port, &h, vs_msg); while (h.op != VS_RST);
    line("closed", 5678);
    line("irqs-nonzero", irq_count > 0);
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
    else if (is_word(t, "blk-snap")) test_blk_snap();
    else if (is_word(t, "console")) test_console();
    else if (is_word(t, "hostile")) test_hostile();
    else if (is_word(t, "net")) test_net();
    else if (is_word(t, "vsock")) test_vsock();
    else fail("unknown vtest");
    puts_("done\n");
    exit_(0);
}
