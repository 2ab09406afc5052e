/*
 * kp_crc32c.c: CRC32C with the SSE4.2 crc32 instruction where the CPU has it
 * (x86-64 only, detected at run time) and slicing-by-8 everywhere else.
 *
 * The 8 KiB of tables are computed once, under pthread_once(), and are
 * read-only afterwards, so no caller can ever observe them half built.
 * The same holds for the 32 powers of x that kp_crc32c_combine() uses.
 */
#include "kp_crc32c.h"

#include <pthread.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#define KP_CRC32C_X86 1
#endif

#define POLY 0x82F63B78u /* Castagnoli, bit-reflected */

static uint32_t crc_table[8][256]; /* written only inside table_init() */
static pthread_once_t crc_table_once = PTHREAD_ONCE_INIT;

static void table_init(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ POLY : c >> 1;
        crc_table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = crc_table[0][n];
        for (int t = 1; t < 8; t++) {
            c = crc_table[0][c & 0xff] ^ (c >> 8);
            crc_table[t][n] = c;
        }
    }
}

/* Little-endian 32-bit load, whatever the host byte order. */
static uint32_t load_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint32_t kp_crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    uint32_t c = ~crc;

    pthread_once(&crc_table_once, table_init);
    const uint32_t(*t)[256] = (const uint32_t(*)[256])crc_table;

    while (len > 0 && ((uintptr_t)p & 7) != 0) {
        c = t[0][(c ^ *p++) & 0xff] ^ (c >> 8);
        len--;
    }
    while (len >= 8) {
        uint32_t lo = load_le32(p) ^ c;
        uint32_t hi = load_le32(p + 4);
        c = t[7][lo & 0xff] ^ t[6][(lo >> 8) & 0xff] ^ t[5][(lo >> 16) & 0xff] ^ t[4][lo >> 24] ^
            t[3][hi & 0xff] ^ t[2][(hi >> 8) & 0xff] ^ t[1][(hi >> 16) & 0xff] ^ t[0][hi >> 24];
        p += 8;
        len -= 8;
    }
    while (len > 0) {
        c = t[0][(c ^ *p++) & 0xff] ^ (c >> 8);
        len--;
    }
    return ~c;
}

/* a * b modulo the polynomial, both bit-reflected (x^0 is the top bit). */
static uint32_t mult_mod_p(uint32_t a, uint32_t b)
{
    uint32_t m = 1u << 31, p = 0;
    for (;;) {
        if (a & m) {
            p ^= b;
            if ((a & (m - 1)) == 0)
                break;
        }
        m >>= 1;
        b = b & 1 ? (b >> 1) ^ POLY : b >> 1;
    }
    return p;
}

static uint32_t x2n_table[32]; /* x^(2^n) mod P; written only inside x2n_init() */
static pthread_once_t x2n_once = PTHREAD_ONCE_INIT;

static void x2n_init(void)
{
    uint32_t p = 1u << 30; /* x^1 */
    x2n_table[0] = p;
    for (int n = 1; n < 32; n++)
        x2n_table[n] = p = mult_mod_p(p, p);
}

/* x^(8n) mod P for n = @len bytes: multiplying a CRC register by it
 * appends @len zero bytes. */
static uint32_t x8n(uint64_t len)
{
    pthread_once(&x2n_once, x2n_init);
    uint32_t p = 1u << 31; /* x^0 */
    for (unsigned k = 3; len; len >>= 1, k++)
        if (len & 1)
            p = mult_mod_p(x2n_table[k & 31], p);
    return p;
}

#ifdef KP_CRC32C_X86
/* Three streams at once: the crc32 instruction takes three cycles to give
 * its result but starts one per cycle, so one stream uses a third of it.
 * Each round runs the instruction over three adjacent blocks of
 * HW_BLOCK bytes and joins the three registers: the register is linear,
 * reg(r, A B) = reg(r, A) * x^(8|B|) ^ reg(0, B). */
#define HW_BLOCK 8192
static uint32_t hw_shift1, hw_shift2; /* x^(8 HW_BLOCK), x^(16 HW_BLOCK) mod P */
static pthread_once_t hw_once = PTHREAD_ONCE_INIT;

static void hw_init(void)
{
    hw_shift1 = x8n(HW_BLOCK);
    hw_shift2 = x8n(2 * HW_BLOCK);
}

__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const uint8_t *p,
                                                            size_t len)
{
    uint32_t c = ~crc;

    while (len > 0 && ((uintptr_t)p & 7) != 0) {
        c = _mm_crc32_u8(c, *p++);
        len--;
    }
    if (len >= 3 * HW_BLOCK) {
        pthread_once(&hw_once, hw_init);
        do {
            uint64_t a = c, b = 0, d = 0;
            for (size_t i = 0; i < HW_BLOCK; i += 8) {
                uint64_t va, vb, vd;
                memcpy(&va, p + i, 8);
                memcpy(&vb, p + HW_BLOCK + i, 8);
                memcpy(&vd, p + 2 * HW_BLOCK + i, 8);
                a = _mm_crc32_u64(a, va);
                b = _mm_crc32_u64(b, vb);
                d = _mm_crc32_u64(d, vd);
            }
            c = mult_mod_p(hw_shift2, (uint32_t)a) ^ mult_mod_p(hw_shift1, (uint32_t)b) ^
                (uint32_t)d;
            p += 3 * HW_BLOCK;
            len -= 3 * HW_BLOCK;
        } while (len >= 3 * HW_BLOCK);
    }
    while (len >= 8) {
        uint64_t v;
        memcpy(&v, p, sizeof v); /* x86 is little-endian, as the instruction expects */
        c = (uint32_t)_mm_crc32_u64(c, v);
        p += 8;
        len -= 8;
    }
    while (len > 0) {
        c = _mm_crc32_u8(c, *p++);
        len--;
    }
    return ~c;
}
#endif

bool kp_crc32c_hw_available(void)
{
#ifdef KP_CRC32C_X86
    /* Reads the cpuid result libgcc caches at start-up: cheap and race-free. */
    return __builtin_cpu_supports("sse4.2") != 0;
#else
    return false;
#endif
}

uint32_t kp_crc32c(uint32_t crc, const void *buf, size_t len)
{
#ifdef KP_CRC32C_X86
    if (kp_crc32c_hw_available())
        return crc32c_hw(crc, buf, len);
#endif
    return kp_crc32c_sw(crc, buf, len);
}

uint32_t kp_crc32c_combine(uint32_t crc1, uint32_t crc2, uint64_t len2)
{
    /* crc1 times x^(8 * len2): the effect of len2 zero bytes. */
    return mult_mod_p(x8n(len2), crc1) ^ crc2;
}
