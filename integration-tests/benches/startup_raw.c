/*
 * The floor for vmm-bin's start-up: the smallest complete KVM program that
 * does what `vmm-bin --kernel hello.bin --reg rax=2 --reg rbx=2` does.
 * It opens /dev/kvm, creates a VM with the same 128 MiB of RAM (mapped the
 * same way: private, anonymous, no reserve), copies the image to 0x1000,
 * starts one vCPU in real mode there with RAX = RBX = 2, writes what the
 * guest sends to port 0x3f8 on stdout (one write per exit, unbuffered)
 * and exits 0 at HLT. No CPUID, no
 * seccomp, no devices, no threads: what any VMM must pay, and no more.
 * integration-tests/scripts/bench-startup.sh compiles it with gcc -O2.
 *
 * Usage: startup_raw IMAGE
 */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define RAM_SIZE (128UL << 20)
#define LOAD_ADDR 0x1000UL

static int fail(const char *what)
{
	perror(what);
	return 1;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s IMAGE\n", argv[0]);
		return 2;
	}
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		return fail("/dev/kvm");
	int vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		return fail("KVM_CREATE_VM");
	unsigned char *ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (ram == MAP_FAILED)
		return fail("mmap");
	int image = open(argv[1], O_RDONLY | O_CLOEXEC);
	if (image < 0)
		return fail(argv[1]);
	ssize_t n = read(image, ram + LOAD_ADDR, RAM_SIZE - LOAD_ADDR);
	if (n < 0)
		return fail("read");
	close(image);
	struct kvm_userspace_memory_region region = {
		.slot = 0,
		.guest_phys_addr = 0,
		.memory_size = RAM_SIZE,
		.userspace_addr = (unsigned long)ram,
	};
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		return fail("KVM_SET_USER_MEMORY_REGION");
	int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0)
		return fail("KVM_CREATE_VCPU");
	int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (run_size < 0)
		return fail("KVM_GET_VCPU_MMAP_SIZE");
	struct kvm_run *run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED)
		return fail("mmap kvm_run");
	struct kvm_sregs sregs;
	if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0)
		return fail("KVM_GET_SREGS");
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0)
		return fail("KVM_SET_SREGS");
	struct kvm_regs regs = { .rip = LOAD_ADDR, .rax = 2, .rbx = 2, .rflags = 0x2 };
	if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0)
		return fail("KVM_SET_REGS");
	for (;;) {
		if (ioctl(vcpu, KVM_RUN, 0) < 0)
			return fail("KVM_RUN");
		switch (run->exit_reason) {
		case KVM_EXIT_IO:
			/* Unbuffered, as vmm-bin's UART writes: the bench times
			 * the guest's last byte of output. */
			if (run->io.direction == KVM_EXIT_IO_OUT && run->io.port == 0x3f8 &&
			    write(1, (char *)run + run->io.data_offset,
				  (size_t)run->io.size * run->io.count) < 0)
				return fail("write");
			break;
		case KVM_EXIT_HLT:
			return 0;
		default:
			fprintf(stderr, "unexpected exit %u\n", run->exit_reason);
			return 1;
		}
	}
}
