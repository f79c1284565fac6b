/* SPDX-License-Identifier: MIT */
/*
 * The user copy on x86-64, with an exception table instead of a jump buffer.
 *
 * uiommu_uaccess_copy_x86(dst, src, len) copies @len bytes and returns how many it did not
 * copy: 0, or the count left when a load or a store faulted. Every instruction here that
 * touches user memory has an entry in the section "uiommu_extable": its own address and the
 * address to resume at, both as offsets from the entry (no relocation, so the section stays
 * read-only in a shared object). The fault handler (mm_self.c, uaccess_handler()) looks the
 * faulting RIP up there and, when found, returns from the signal to the resume address with
 * the registers as the fault left them: %rcx holds the bytes left (`rep movsb` keeps it exact;
 * the word loop and the tail count it down only after a move has completed), and the fixup
 * hands it back. Nothing is saved or armed per copy, so a copy costs what its moves cost.
 *
 * Up to 64 bytes move as 8-byte words then one 4-, 2- and 1-byte move each as needed (an
 * ioctl's size word is one move), when @dst does not start inside @src's range (where ascending
 * words give what ascending bytes would); `rep movsb` otherwise, whose start-up costs more than
 * such a short copy.
 *
 * Only the instructions listed are ours: a fault anywhere else, including in a program's signal
 * handler that runs on top of a copy, goes to whoever it would have gone to without us.
 */
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
.Lwords:
	cmpq	$8, %rcx
	jb	.Ltail4
.Lword_load:
	movq	(%rsi), %rax
.Lword_store:
	movq	%rax, (%rdi)
	addq	$8, %rsi
	addq	$8, %rdi
	subq	$8, %rcx
	jmp	.Lwords
	/* Under 8 bytes left: one move each of 4, 2 and 1 as the count's bits ask. */
.Ltail4:
	testb	$4, %cl
	jz	.Ltail2
.Ltail4_load:
	movl	(%rsi), %eax
.Ltail4_store:
	movl	%eax, (%rdi)
	addq	$4, %rsi
	addq	$4, %rdi
	subq	$4, %rcx
.Ltail2:
	testb	$2, %cl
	jz	.Ltail1
.Ltail2_load:
	movw	(%rsi), %ax
.Ltail2_store:
	movw	%ax, (%rdi)
	addq	$2, %rsi
	addq	$2, %rdi
	subq	$2, %rcx
.Ltail1:
	testb	$1, %cl
	jz	.Ldone
.Ltail1_load:
	movb	(%rsi), %al
.Ltail1_store:
	movb	%al, (%rdi)
	jmp	.Ldone
.Lrep:
.Lrep_move:
	rep movsb
.Ldone:
	xorl	%eax, %eax
	ret
.Lfixup:
	movq	%rcx, %rax
	ret
	.cfi_endproc
	.size	uiommu_uaccess_copy_x86, .-uiommu_uaccess_copy_x86

/* One entry: the faulting instruction, where to resume. */
	.macro	uaccess_extable insn, fixup
	.pushsection uiommu_extable, "a"
	.balign	4
	.long	\insn - .
	.long	\fixup - .
	.popsection
	.endm

	uaccess_extable .Lword_load, .Lfixup
	uaccess_extable .Lword_store, .Lfixup
	uaccess_extable .Ltail4_load, .Lfixup
	uaccess_extable .Ltail4_store, .Lfixup
	uaccess_extable .Ltail2_load, .Lfixup
	uaccess_extable .Ltail2_store, .Lfixup
	uaccess_extable .Ltail1_load, .Lfixup
	uaccess_extable .Ltail1_store, .Lfixup
	uaccess_extable .Lrep_move, .Lfixup

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
