/* SPDX-License-Identifier: MIT */
/*
 * The dma-test device's programming interface (docs/dma-test.md is the reference): the
 * registers of BAR0 and BAR2, the descriptor and the completion record. Plain constants and
 * layouts, for the model and for drivers and tests of it; nothing here needs the library.
 */
#ifndef UIOMMU_MACHINE_MODELS_DMA_TEST_H
#define UIOMMU_MACHINE_MODELS_DMA_TEST_H

#include <stdint.h>

#define DMA_TEST_VENDOR_ID 0x1234
#define DMA_TEST_DEVICE_ID 0xd7a0
#define DMA_TEST_CLASS 0xff0000        /* unassigned class: no host driver claims it */
#define DMA_TEST_REVISION 0x01

#define DMA_TEST_NR_QUEUES 4u
#define DMA_TEST_MAX_LEN (16u << 20)   /* bytes one descriptor may move */
#define DMA_TEST_MAX_RING 4096u        /* descriptors in a ring */

/* BAR0: 16 KiB, 64-bit, non-prefetchable memory. */
#define DMA_TEST_BAR0_SIZE 0x4000u
#define DMA_TEST_REG_ID 0x000          /* RO32: DMA_TEST_ID */
#define DMA_TEST_REG_VERSION 0x004     /* RO32: DMA_TEST_VERSION */
#define DMA_TEST_REG_NR_QUEUES 0x008   /* RO32 */
#define DMA_TEST_REG_CAPS 0x00c        /* RO32: DMA_TEST_CAP_* */
#define DMA_TEST_REG_SCRATCH 0x010     /* RW64: any width, for drivers to test their accesses */
#define DMA_TEST_REG_INT_STATUS 0x018  /* RW1C32: bit q = queue q raised its interrupt */

#define DMA_TEST_ID 0x54414d44u        /* "DMAT" */
#define DMA_TEST_VERSION 0x00010000u   /* 1.0 */
#define DMA_TEST_CAP_COPY (1u << 0)
#define DMA_TEST_CAP_FILL (1u << 1)
#define DMA_TEST_CAP_COMPARE (1u << 2)
#define DMA_TEST_CAP_PASID (1u << 3)   /* the function has a PASID capability */

/* Queue q's registers at DMA_TEST_QUEUE(q) + offset. */
#define DMA_TEST_QUEUE(q) (0x100u + 0x40u * (q))
#define DMA_TEST_Q_RING_BASE 0x00      /* RW64: IOVA of the ring, 64-byte aligned */
#define DMA_TEST_Q_RING_SIZE 0x08      /* RW32: descriptors, a power of two, 2 to 4096 */
#define DMA_TEST_Q_CTRL 0x0c           /* RW32: DMA_TEST_CTRL_* */
#define DMA_TEST_Q_PASID 0x10          /* RW32: bit 31 valid, bits 19:0 the PASID */
#define DMA_TEST_Q_HEAD 0x14           /* RO32: the next descriptor the engine takes */
#define DMA_TEST_Q_TAIL 0x18           /* RW32: the doorbell (the same as the doorbell page's) */
#define DMA_TEST_Q_STATUS 0x1c         /* RO32: DMA_TEST_STATUS_* */
#define DMA_TEST_Q_ERROR 0x20          /* RO32: DMA_TEST_ERR_* of the stop */
#define DMA_TEST_Q_ERRNO 0x24          /* RO32: the IOMMU's errno for DMA_TEST_ERR_DMA */
#define DMA_TEST_Q_ERROR_IOVA 0x28     /* RO64: the IOVA the IOMMU refused */
#define DMA_TEST_Q_COMPLETED 0x30      /* RO32: descriptors completed, free-running */

#define DMA_TEST_CTRL_ENABLE (1u << 0) /* 0 -> 1: start at head 0; 1 -> 0: stop, head = tail = 0 */
#define DMA_TEST_CTRL_IRQ (1u << 1)    /* raise the queue's vector on IRQ descriptors and errors */

#define DMA_TEST_PASID_VALID (1u << 31)
#define DMA_TEST_PASID_MASK 0xfffffu

#define DMA_TEST_STATUS_RUNNING (1u << 0) /* enabled and not stopped by an error */
#define DMA_TEST_STATUS_IDLE (1u << 1)    /* head == tail */
#define DMA_TEST_STATUS_ERROR (1u << 2)   /* stopped: see ERROR, ERRNO, ERROR_IOVA */

#define DMA_TEST_ERR_NONE 0
#define DMA_TEST_ERR_DMA 1             /* the IOMMU refused an access (fault, permission ...) */
#define DMA_TEST_ERR_DESC 2            /* a descriptor with an unknown op, flag or a bad length */
#define DMA_TEST_ERR_RING 3            /* enabled with a bad ring base or size */

/* The doorbell page: BAR0 0x1000-0x1fff, mmap-able; queue q's tail is the u32 at q * 8. */
#define DMA_TEST_DOORBELL_PAGE 0x1000u
#define DMA_TEST_DOORBELL(q) (DMA_TEST_DOORBELL_PAGE + 8u * (q))
/* MSI-X: a vector per queue; the table at 0x2000, the PBA at 0x3000 (both in BAR0). */
#define DMA_TEST_MSIX_TABLE 0x2000u
#define DMA_TEST_MSIX_PBA 0x3000u

/* The expansion ROM: a 1 KiB image (PCI ROM header, PCIR with these IDs) in a 2 KiB ROM BAR. */
#define DMA_TEST_ROM_SIZE 1024u
#define DMA_TEST_ROM_BAR_SIZE 2048u

/* BAR2: 16 bytes of I/O space. */
#define DMA_TEST_BAR2_SIZE 16u
#define DMA_TEST_IO_ID 0x0             /* RO32: DMA_TEST_ID */
#define DMA_TEST_IO_SCRATCH 0x4        /* RW32 */

/* A descriptor: 64 bytes, little endian, in the ring at base + 64 * index. */
#define DMA_TEST_OP_NOP 0u
#define DMA_TEST_OP_COPY 1u            /* len bytes from src to dst */
#define DMA_TEST_OP_FILL 2u            /* dst: len bytes of the 8-byte pattern, repeated */
#define DMA_TEST_OP_COMPARE 3u         /* src and dst, len bytes: the result in the completion */
#define DMA_TEST_DESC_IRQ (1u << 0)    /* raise the queue's vector when this one completes */

struct dma_test_desc {
	uint32_t op;
	uint32_t flags;
	uint64_t src;
	uint64_t dst;
	uint64_t len;
	uint64_t pattern;
	uint64_t completion;           /* IOVA of a struct dma_test_completion; 0: none */
	uint64_t cookie;               /* copied into the completion record */
	uint64_t reserved;
};

/* The completion record the device writes (by DMA) when a descriptor is done. */
#define DMA_TEST_COMP_DONE 1u
struct dma_test_completion {
	uint32_t status;               /* DMA_TEST_COMP_DONE */
	uint32_t result;               /* COMPARE: 0 equal, 1 different; others 0 */
	uint64_t bytes;                /* bytes done; COMPARE: offset of the first difference */
	uint64_t cookie;
	uint64_t reserved;
};

_Static_assert(sizeof(struct dma_test_desc) == 64, "descriptor layout");
_Static_assert(sizeof(struct dma_test_completion) == 32, "completion layout");

#endif
