/* SPDX-License-Identifier: MIT */
/* The status-file rewrite of proc_status.c, for its white-box test. */
#ifndef UIOMMU_MM_PROC_STATUS_H
#define UIOMMU_MM_PROC_STATUS_H

#include <stdint.h>
#include <stdio.h>

/*
 * Writes the status text @in to @f with VmLck raised by @locked_kb and VmPin by @pinned_kb
 * (a VmPin line made right after VmLck when @in has none).
 */
void proc_status_rewrite(FILE *f, const char *in, uint64_t pinned_kb, uint64_t locked_kb);

#endif
