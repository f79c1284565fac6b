/* SPDX-License-Identifier: MIT */
/*
 * The user copy on x86-64, with an exception table instead of a jump buffer.
 *
 * uiommu_uaccess_copy_x86(dst, src, len) copies @len bytes and returns 0, or non-zero when a
 * load or a store faulted (the bytes left in the loops, @len in the short paths; callers only
 * ask whether it is 0). Every instruction here that touches user memory (each one written as
 * `uaccess INSN`) has an entry in the section "uiommu_extable": its own address and the
 * address to resume at, both as offsets from the entry (no relocation, so the section stays
 * read-only in a shared object). The fault
 * handler (mm_self.c, uaccess_handler()) looks the faulting RIP up there and, when found,
 * returns from the signal to the resume address with the registers as the fault left them:
 * %rcx holds the bytes left (`rep movsb` keeps it exact; the word loop counts it down only
 * after a move has completed; the short paths never touch it), and the fixup hands it back.
 * Nothing is saved or armed per copy, so a copy costs what its moves cost.
 *
 * Short copies, when @dst does not start inside @src's range (where ascending words give what
 * ascending bytes would), are a few moves with no loop, the way a memcpy() does them: every
 * load first, then every store, each pair of moves covering the copy from both ends (they
 * overlap when the length is not a sum of the two sizes): 1 byte; 2-3 as two 2-byte moves; 4-7
 * as two 4-byte; 8-16 as two 8-byte; 17-32 as four 8-byte. Nothing outside [src, src + len)
 * is read or written, so such a copy faults exactly where a byte loop would fault on some
 * byte (a partly written @dst is allowed either way). An ioctl's size word, its struct and an
 * IOVA range are each one of those. 33 to 64 bytes go through an 8-byte word loop then a 4-,
 * 2- and 1-byte move as needed; longer copies, and overlapping ones, through `rep movsb`,
 * whose start-up costs more than a short copy.
 *
 * Only the instructions listed are ours: a fault anywhere else, including in a program's signal
 * handler that runs on top of a copy, goes to whoever it would have gone to without us.
 */
/* One access to user memory: the instruction, and its entry in the exception table. */
	.macro	uaccess insn:vararg
.Luaccess\@:
	\insn
	.pushsection uiommu_extable, "a"
	.balign	4
	.long	.Luaccess\@ - .
	.long	.Lfixup - .
	.popsection
	.endm

/*
 * A copy of @n to 2 * @n bytes as two @mov moves, the first @n bytes and the last @n, both
 * loads before either store; then return 0. %rcx is left alone: it is what a fault returns.
 */
	.macro	copy_ends mov, t0, t1, n
	uaccess	\mov	(%rsi), \t0
	uaccess	\mov	-\n(%rsi,%rdx), \t1
	uaccess	\mov	\t0, (%rdi)
	uaccess	\mov	\t1, -\n(%rdi,%rdx)
	xorl	%eax, %eax
	ret
	.endm

	.text
	.globl	uiommu_uaccess_copy_x86
	.hidden	uiommu_uaccess_copy_x86
	.type	uiommu_uaccess_copy_x86, @function
	.p2align 4
uiommu_uaccess_copy_x86:
	.cfi_startproc
#ifdef __CET__
	endbr64
#endif
	movq	%rdx, %rcx
	cmpq	$64, %rdx
	ja	.Lrep
	movq	%rdi, %rax
	subq	%rsi, %rax
	cmpq	%rdx, %rax
	jb	.Lrep
	cmpq	$16, %rdx
	ja	.Lover16
	cmpq	$8, %rdx
	jb	.Lunder8
	copy_ends movq, %rax, %r8, 8
.Lover16:
	cmpq	$32, %rdx
	ja	.Lwords
	/* 17-32: the first 16 bytes and the last 16. */
	uaccess	movq	(%rsi), %rax
	uaccess	movq	8(%rsi), %r8
	uaccess	movq	-16(%rsi,%rdx), %r9
	uaccess	movq	-8(%rsi,%rdx), %r10
	uaccess	movq	%rax, (%rdi)
	uaccess	movq	%r8, 8(%rdi)
	uaccess	movq	%r9, -16(%rdi,%rdx)
	uaccess	movq	%r10, -8(%rdi,%rdx)
	xorl	%eax, %eax
	ret
.Lunder8:
	cmpq	$4, %rdx
	jb	.Lunder4
	copy_ends movl, %eax, %r8d, 4
.Lunder4:
	cmpq	$2, %rdx
	jb	.Lunder2
	copy_ends movw, %ax, %r8w, 2
.Lunder2:
	testq	%rdx, %rdx
	jz	.Ldone
	uaccess	movb	(%rsi), %al
	uaccess	movb	%al, (%rdi)
	xorl	%eax, %eax
	ret
	/* 33-64 bytes: words, %rcx counted down after each move. */
.Lwords:
	cmpq	$8, %rcx
	jb	.Ltail4
	uaccess	movq	(%rsi), %rax
	uaccess	movq	%rax, (%rdi)
	addq	$8, %rsi
	addq	$8, %rdi
	subq	$8, %rcx
	jmp	.Lwords
	/* Under 8 bytes left: one move each of 4, 2 and 1 as the count's bits ask. */
.Ltail4:
	testb	$4, %cl
	jz	.Ltail2
	uaccess	movl	(%rsi), %eax
	uaccess	movl	%eax, (%rdi)
	addq	$4, %rsi
	addq	$4, %rdi
	subq	$4, %rcx
.Ltail2:
	testb	$2, %cl
	jz	.Ltail1
	uaccess	movw	(%rsi), %ax
	uaccess	movw	%ax, (%rdi)
	addq	$2, %rsi
	addq	$2, %rdi
	subq	$2, %rcx
.Ltail1:
	testb	$1, %cl
	jz	.Ldone
	uaccess	movb	(%rsi), %al
	uaccess	movb	%al, (%rdi)
	jmp	.Ldone
.Lrep:
	uaccess	rep movsb
.Ldone:
	xorl	%eax, %eax
	ret
.Lfixup:
	movq	%rcx, %rax
	ret
	.cfi_endproc
	.size	uiommu_uaccess_copy_x86, .-uiommu_uaccess_copy_x86

	.section .note.GNU-stack, "", @progbits

/*
 * A build with -fcf-protection marks every object for IBT and shadow stacks, and the linker
 * keeps the marking only when every object has it: the compiler's <cet.h> emits this file's
 * property note (the entry above starts with endbr64; the fixup returns on the stack it was
 * called on, so shadow stacks hold).
 */
#ifdef __CET__
#include <cet.h>
#endif
