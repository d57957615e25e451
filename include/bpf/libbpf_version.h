/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * userbpf: the libbpf release whose API these headers describe.
 */
#ifndef __LIBBPF_VERSION_H
#define __LIBBPF_VERSION_H

#define LIBBPF_MAJOR_VERSION 1
#define LIBBPF_MINOR_VERSION 7

#endif /* __LIBBPF_VERSION_H */
