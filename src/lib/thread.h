/* SPDX-License-Identifier: MIT */
/*
 * The library's threads are running when their creator goes on (lib/thread.c says why).
 */
#ifndef UIOMMU_LIB_THREAD_H
#define UIOMMU_LIB_THREAD_H

#include <pthread.h>

/* pthread_create()'s arguments and answer (0 or a positive errno), returning once @fn runs. */
int uiommu_thread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*fn)(void *),
			 void *arg);

#endif
