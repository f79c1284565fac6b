/* SPDX-License-Identifier: MIT */
/*
 * The virtio-pci functions' layout (docs/virtio.md): where the virtio structures sit in the
 * BARs, the queue and vector limits, the features offered. The structures themselves are the
 * virtio 1.x spec's, as <linux/virtio_pci.h>, <linux/virtio_ring.h> and <linux/virtio_blk.h>
 * give them. Plain constants, for the model and for drivers and tests of it.
 */
#ifndef UIOMMU_MACHINE_MODELS_VIRTIO_H
#define UIOMMU_MACHINE_MODELS_VIRTIO_H

#define VIO_VENDOR_ID 0x1af4
#define VIO_DEVICE_ID_BASE 0x1040      /* + the virtio device type */
#define VIO_TYPE_BLK 2u
#define VIO_TYPE_RNG 4u
#define VIO_REVISION 0x01              /* >= 1: a modern-only device */

#define VIO_MSIX_VECTORS 4u
#define VIO_QUEUE_SIZE_MAX 128u        /* what queue_size reads after a reset */

/* BAR1: MSI-X table and PBA (32-bit memory, 4 KiB). */
#define VIO_MSIX_BAR 1u
#define VIO_MSIX_BAR_SIZE 0x1000u
#define VIO_MSIX_TABLE 0x000u
#define VIO_MSIX_PBA 0x800u

/* BAR4: the virtio structures (64-bit prefetchable memory, 16 KiB), one page each. */
#define VIO_BAR 4u
#define VIO_BAR_SIZE 0x4000u
#define VIO_COMMON_OFF 0x0000u
#define VIO_COMMON_LEN 0x40u           /* up to admin_queue_num: Linux maps that much */
#define VIO_ISR_OFF 0x1000u
#define VIO_ISR_LEN 0x4u
#define VIO_DEVICE_OFF 0x2000u
#define VIO_DEVICE_LEN 0x40u           /* virtio-blk only */
#define VIO_NOTIFY_OFF 0x3000u
#define VIO_NOTIFY_MULT 4u             /* queue q's notify register: VIO_NOTIFY_OFF + 4 * q */

/* Features offered (bit numbers of <linux/virtio_config.h>, <linux/virtio_blk.h>). */
#define VIO_F_VERSION_1 32u
#define VIO_F_ACCESS_PLATFORM 33u
#define VIO_BLK_F_SEG_MAX 2u
#define VIO_BLK_F_RO 5u                /* only when the backing file cannot be written */
#define VIO_BLK_F_FLUSH 9u
#define VIO_BLK_SEG_MAX (VIO_QUEUE_SIZE_MAX - 2u)

#define VIO_BLK_ID "uiommu-virtio-blk"  /* what VIRTIO_BLK_T_GET_ID returns (20 bytes max) */

#endif
