/*
 * kp_crc32c.h: CRC32C (Castagnoli, reflected polynomial 0x82F63B78), the
 * checksum of Kafka RecordBatch v2 (it covers Attributes to the end).
 *
 * Ownership: buffers are borrowed for the duration of the call.
 * Threading: all functions are thread-safe.  On x86-64 the SSE4.2 crc32
 * instruction is used when the CPU has it; otherwise a slicing-by-8 table,
 * built once on first use under pthread_once(), does the work.
 */
#ifndef KP_CRC32C_H
#define KP_CRC32C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The standard check value: CRC32C of the nine ASCII bytes "123456789". */
#define KP_CRC32C_CHECK 0xE3069283u

/**
 * Extend @crc with @len bytes at @buf.  Start with @crc = 0; chaining works:
 * kp_crc32c(kp_crc32c(0, a, n), b, m) equals the CRC of a followed by b.
 * @thread any
 */
uint32_t kp_crc32c(uint32_t crc, const void *buf, size_t len);

/**
 * The CRC of A followed by B from @crc1 = kp_crc32c(0, A, n) and
 * @crc2 = kp_crc32c(0, B, @len2), without reading either: about 32 shifts
 * per set bit of @len2 (zlib's crc32_combine for this polynomial).
 * @thread any
 */
uint32_t kp_crc32c_combine(uint32_t crc1, uint32_t crc2, uint64_t len2);

/**
 * The same function computed with the portable slicing-by-8 table, whatever
 * the CPU supports (lets tests compare both paths).
 * @thread any
 */
uint32_t kp_crc32c_sw(uint32_t crc, const void *buf, size_t len);

/**
 * True when kp_crc32c() uses the CPU's crc32 instruction.
 * @thread any
 */
bool kp_crc32c_hw_available(void);

#endif
