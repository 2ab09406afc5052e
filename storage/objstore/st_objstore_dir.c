/*
 * st_objstore_dir.c: the object store on a local directory.
 *
 * Object `a/b/c` is the file <root>/a/b/c.  A put writes a temporary file
 * (".tmp-...", never listed) in the target directory, fsyncs it, moves it
 * into place with renameat2(RENAME_NOREPLACE) -- or link()+unlink() where the
 * file system lacks it -- so an existing object is never replaced, then
 * fsyncs the directory.  A directory is fsynced into its parent once per
 * store before the first object lands in it (see dir_durable).
 *
 * Every operation is one job on an st_pool: the work (all file I/O) runs on a
 * worker thread against a directory fd opened once at start (so later cwd
 * changes do not matter), and the callback runs from the pool's completion
 * on the loop thread.  Even a rejected key completes that way, so no
 * callback ever runs inside the call that started it.  A put's bytes are the
 * caller's: the worker only reads them, and only before the completion that
 * runs the callback; nothing here frees them.
 *
 * Creating a file is the costly part of a put on some file systems (ext4
 * without a journal scans for an inode not deleted within the last 30 s), so
 * after a put the store creates the next temp file of that directory ahead of
 * time (a "spare", at most SPARES of them, made on a worker): the next put
 * there is write + fsync + rename + directory fsync, exactly as before, with
 * the create already done.  A spare is an ordinary temp file: never listed,
 * unlinked when the store is freed, left behind only by a crash like the
 * temp file of an interrupted put.
 *
 * A put announced by st_objstore_prepare costs less still: a worker creates
 * the file under its final name and fsyncs the directory ahead of time (a
 * "prepared" key, at most PREPARED of them), so the put itself is write +
 * fdatasync -- one flush instead of a file flush and a directory flush one
 * after the other.  Until its put is answered a prepared key is no object:
 * list walks past it, get finds nothing, del leaves it alone (so no garbage
 * collection can unlink the file under a put still writing it).  The name
 * is durable before any byte is, so a crash can leave a prepared key's file
 * empty or half written under its final name; whoever commits a reference
 * to an object before its put is answered must check the bytes after a
 * crash, not the name (st_log's commit-ahead check does, and calls
 * st_objstore_sync on what it keeps).  Prepared files never used are
 * unlinked when the store is freed; after a crash they are unreferenced
 * objects for garbage collection.
 *
 * A large put whose bytes start on a 4 KiB boundary is written with O_DIRECT
 * (its 4 KiB-aligned part; the tail, if any, through the page cache): the
 * device reads the caller's buffer itself, so the per-byte copy into the
 * page cache -- the largest cost of a put on the loop's behalf -- goes away.
 * Where O_DIRECT is refused (tmpfs, an alignment the device does not take)
 * the put is written through the page cache from the start.  Durability is
 * the same either way: the fsync below covers both parts.  Large ranges of
 * large objects are read back with O_DIRECT too: such objects are not in the
 * page cache.  A get_into whose buffer lies at the range's place in a 4 KiB
 * block (st_objstore_get_into) gets the blocks straight into that buffer;
 * otherwise the blocks around the range go into an aligned buffer first.
 *
 * Directories are never removed: a deleted object leaves its (possibly
 * empty) directory behind.  This keeps puts free of races with a concurrent
 * rmdir; listings simply walk past empty directories.
 */
#include "st_objstore.h"
#include "st_pool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define KEY_MAX 1024       /* bytes in a key, as S3 */
#define NAME_MAX_BYTES 255 /* bytes in one path component (NAME_MAX on Linux) */
#define TMP_PREFIX ".tmp-" /* temporary files; a key component may not start so */
#define TMP_PREFIX_LEN 5
#define WRITE_CHUNK (1u << 30) /* bytes per write(): Linux caps one call below 2 GiB */
#define DIRECT_ALIGN 4096u     /* O_DIRECT buffer, offset and length alignment */
_Static_assert(DIRECT_ALIGN == ST_OBJ_GET_ALIGN, "get_into's placement is O_DIRECT's");
#define DIRECT_MIN (256u << 10) /* smaller puts go through the page cache */
/* Bytes per direct write(): one call for a whole large object (a merged
 * segment: tens of MB) fills the device's queue, and every other put's
 * fsync waits behind all of it (a 150 KB put beside a 9 MB one: p99 18 ms,
 * 6 ms with 1 MiB writes, which keep 96% of the large write's speed). */
#define DIRECT_SLICE (1u << 20)

#define SPARES 2   /* temp files created ahead of the puts that will use them */
#define PREPARED 4 /* keys created ahead of their puts (st_objstore_prepare) */

typedef enum spare_state { SPARE_EMPTY, SPARE_FILLING, SPARE_READY } spare_state_t;

/* A temp file created ahead of time in directory @dir. */
typedef struct spare {
    spare_state_t state;
    char dir[KEY_MAX + 1]; /* relative to the root, "" = the root */
    char name[96];         /* the temp file's name in @dir */
    int fd;                /* open for writing (SPARE_READY) */
} spare_t;

typedef enum prep_state {
    PREP_EMPTY,    /* free */
    PREP_QUEUED,   /* reserved on the loop, its job not started (a put cancels it) */
    PREP_CREATING, /* a worker is creating the file (a put waits for it) */
    PREP_READY,    /* created, durable name, fd open for writing */
    PREP_TAKEN,    /* a put is writing it */
} prep_state_t;

/* A key prepared for its put.  Guarded by prep_mu. */
typedef struct prep {
    prep_state_t state;
    uint64_t gen;          /* which reservation: a stale job leaves the slot alone */
    char key[KEY_MAX + 1]; /* set from QUEUED on */
    int fd;                /* PREP_READY */
} prep_t;

/* An add-only set of directory paths (relative to root) whose entry in the
 * parent directory is known to be durable.  Guarded by dirs_mu. */
typedef struct dirset {
    char **slots; /* open addressing, NULL = empty */
    size_t cap;   /* power of two, or 0 */
    size_t n;     /* used slots; n <= cap / 2 */
} dirset_t;

typedef struct st_objstore_dir {
    st_objstore_t os;             /* must be first: the vtable header */
    st_pool_t *pool;              /* workers that run every operation */
    int rootfd;                   /* O_DIRECTORY fd of the root; all paths are relative to it */
    uint64_t tmp_salt;            /* mixed into temp file names: unique per store instance */
    atomic_uint_fast64_t tmp_seq; /* next temp file number */
    pthread_mutex_t dirs_mu;
    dirset_t dirs; /* directories already fsynced into their parent */
    pthread_mutex_t spare_mu;
    spare_t spares[SPARES]; /* state set on the loop (EMPTY -> FILLING) and workers */
    pthread_mutex_t prep_mu;
    pthread_cond_t prep_cv; /* a slot left PREP_CREATING */
    prep_t preps[PREPARED];
    uint64_t prep_gen; /* last reservation's gen */
} st_objstore_dir_t;

typedef enum op_kind { OP_PUT, OP_GET, OP_LIST, OP_DEL, OP_SYNC } op_kind_t;

typedef struct dir_op {
    st_objstore_dir_t *ds;
    op_kind_t kind;
    st_err_t err; /* result; set before submit for a rejected argument (work skips) */
    char *key;    /* owned copy; the prefix for OP_LIST */
    union {
        st_done_cb done; /* put, del, sync */
        st_data_cb data; /* get */
        st_list_cb list; /* list */
    } cb;
    void *arg;
    const uint8_t *data; /* put: the caller's bytes (borrowed until the callback) */
    uint8_t *buf;        /* get: bytes read (owned) */
    uint8_t *dst;        /* get_into: the caller's buffer (borrowed), buf unused */
    size_t skip;         /* get: bytes of buf before the first one asked for */
    size_t len;          /* bytes in data (put) or in buf after skip (get) */
    uint64_t off;        /* get: first byte */
    uint64_t want;       /* get: bytes asked for, ST_OBJ_TO_END = all */
    char *start_after;   /* list: owned copy, or NULL */
    size_t max_keys;     /* list: page size */
    st_obj_info_t *objs; /* list: owned; each objs[i].key is owned */
    size_t nobjs;        /* list: entries in objs */
    size_t cap_objs;     /* list: allocated entries */
    bool more;           /* list: the listing was truncated at max_keys */
} dir_op_t;

/* ---------------------------------------------------------------- keys */

/* 1 when @comp (@n bytes) may be a path component of a key. */
static int comp_ok(const char *comp, size_t n)
{
    if (n == 0 || n > NAME_MAX_BYTES)
        return 0;
    if ((n == 1 && comp[0] == '.') || (n == 2 && comp[0] == '.' && comp[1] == '.'))
        return 0;
    if (n >= TMP_PREFIX_LEN && memcmp(comp, TMP_PREFIX, TMP_PREFIX_LEN) == 0)
        return 0;
    return 1;
}

/* 1 when the first @n bytes of @s are '/'-separated valid components. */
static int path_ok(const char *s, size_t n)
{
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || s[i] == '/') {
            if (!comp_ok(s + start, i - start))
                return 0;
            start = i + 1;
        }
    }
    return 1;
}

/* A key: 1..KEY_MAX bytes, relative, no empty, ".", ".." or temp-named
 * components.  (A C string cannot carry an inner NUL: the key ends there.) */
static int key_ok(const char *key)
{
    if (!key)
        return 0;
    size_t n = strnlen(key, KEY_MAX + 1);
    if (n == 0 || n > KEY_MAX)
        return 0;
    return path_ok(key, n);
}

/* ---------------------------------------------------------------- dirset */

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int dirset_has(const dirset_t *set, const char *path)
{
    if (set->cap == 0)
        return 0;
    for (size_t i = hash_str(path) & (set->cap - 1);; i = (i + 1) & (set->cap - 1)) {
        if (!set->slots[i])
            return 0;
        if (strcmp(set->slots[i], path) == 0)
            return 1;
    }
}

static void dirset_place(char **slots, size_t cap, char *path)
{
    size_t i = hash_str(path) & (cap - 1);
    while (slots[i])
        i = (i + 1) & (cap - 1);
    slots[i] = path;
}

/* Best effort: on allocation failure the path is simply not remembered (it
 * costs one more fsync later, never correctness). */
static void dirset_add(dirset_t *set, const char *path)
{
    if (dirset_has(set, path))
        return;
    if ((set->n + 1) * 2 > set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 64;
        char **slots = calloc(cap, sizeof(*slots));
        if (!slots)
            return;
        for (size_t i = 0; i < set->cap; i++)
            if (set->slots[i])
                dirset_place(slots, cap, set->slots[i]);
        free(set->slots);
        set->slots = slots;
        set->cap = cap;
    }
    char *copy = strdup(path);
    if (!copy)
        return;
    dirset_place(set->slots, set->cap, copy);
    set->n++;
}

static void dirset_deinit(dirset_t *set)
{
    for (size_t i = 0; i < set->cap; i++)
        free(set->slots[i]);
    free(set->slots);
    memset(set, 0, sizeof(*set));
}

/* ---------------------------------------------------------------- file helpers */

/* fsync the directory @path under @rootfd ("" = the root itself). */
static int fsync_dir(int rootfd, const char *path)
{
    if (!*path)
        return fsync(rootfd);
    int fd = openat(rootfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

/*
 * Make every directory of @dir ("a/b/c", relative to the root) exist and be
 * durable: after mkdir, a directory's entry lives in its parent, so the
 * parent is fsynced -- also when the directory already existed but this
 * store has not fsynced it yet, because a concurrent put (or a process that
 * crashed) may have created it without the fsync having happened.
 * @returns 0, or -1 with errno (ENOTDIR when a component is a file).
 * @thread worker
 */
static int dir_durable(st_objstore_dir_t *ds, const char *dir)
{
    char path[KEY_MAX + 1];
    size_t n = strlen(dir);
    memcpy(path, dir, n + 1);
    for (size_t i = 0; i <= n; i++) {
        if (i < n && path[i] != '/')
            continue;
        path[i] = '\0';
        pthread_mutex_lock(&ds->dirs_mu);
        int known = dirset_has(&ds->dirs, path);
        pthread_mutex_unlock(&ds->dirs_mu);
        if (!known) {
            struct stat st;
            if (mkdirat(ds->rootfd, path, 0755) != 0) {
                if (errno != EEXIST)
                    return -1;
                if (fstatat(ds->rootfd, path, &st, AT_SYMLINK_NOFOLLOW) != 0)
                    return -1;
                if (!S_ISDIR(st.st_mode)) {
                    errno = ENOTDIR;
                    return -1;
                }
            }
            /* The parent is path[0..last '/'), or the root. */
            char *slash = strrchr(path, '/');
            if (slash)
                *slash = '\0';
            int rc = fsync_dir(ds->rootfd, slash ? path : "");
            if (slash)
                *slash = '/';
            if (rc != 0)
                return -1;
            pthread_mutex_lock(&ds->dirs_mu);
            dirset_add(&ds->dirs, path);
            pthread_mutex_unlock(&ds->dirs_mu);
        }
        if (i < n)
            path[i] = '/';
    }
    return 0;
}

/* Write @n bytes at @off, at most @most per call; -1 with errno on failure. */
static int write_all(int fd, const uint8_t *p, size_t n, off_t off, size_t most)
{
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n < most ? n : most, off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        off += w;
        n -= (size_t)w;
    }
    return 0;
}

static int set_direct(int fd, bool on)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -1;
    return fcntl(fd, F_SETFL, on ? fl | O_DIRECT : fl & ~O_DIRECT);
}

/* Write @data to the empty file @fd: its aligned part with O_DIRECT when
 * @data and @len allow, else (or when O_DIRECT is refused) all of it
 * through the page cache. */
static int write_object(int fd, const uint8_t *data, size_t len)
{
    size_t direct = len & ~(size_t)(DIRECT_ALIGN - 1);
    if (len < DIRECT_MIN || (uintptr_t)data % DIRECT_ALIGN != 0 || set_direct(fd, true) != 0)
        return write_all(fd, data, len, 0, WRITE_CHUNK);
    int rc = write_all(fd, data, direct, 0, DIRECT_SLICE);
    int werr = errno;
    if (set_direct(fd, false) != 0)
        return -1;
    if (rc != 0 && werr != EINVAL)
        return -1;
    if (rc != 0) /* alignment refused: everything through the page cache */
        return write_all(fd, data, len, 0, WRITE_CHUNK);
    return write_all(fd, data + direct, len - direct, (off_t)direct, WRITE_CHUNK);
}

/* Move @tmp to @name in @dfd unless @name exists (then -1 with EEXIST). */
static int link_noreplace(int dfd, const char *tmp, const char *name)
{
    if (renameat2(dfd, tmp, dfd, name, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
        return -1;
    /* The file system cannot rename without replacing; link() never
     * replaces either.  A leftover temp name after a successful link is
     * harmless: it is never listed. */
    if (linkat(dfd, tmp, dfd, name, 0) != 0)
        return -1;
    unlinkat(dfd, tmp, 0);
    return 0;
}

/* ---------------------------------------------------------------- put */

/* Create a fresh temp file in @dfd; its name goes to @tmp (@tmp_size bytes). */
static int tmp_create(st_objstore_dir_t *ds, int dfd, char *tmp, size_t tmp_size)
{
    for (int attempt = 0; attempt < 100; attempt++) {
        uint64_t seq = atomic_fetch_add(&ds->tmp_seq, 1);
        snprintf(tmp, tmp_size, TMP_PREFIX "%ld-%016llx-%llu", (long)getpid(),
                 (unsigned long long)ds->tmp_salt, (unsigned long long)seq);
        int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd >= 0 || errno != EEXIST)
            return fd;
    }
    errno = EEXIST;
    return -1;
}

/* Take a spare temp file of directory @dir: its fd, its name into @tmp;
 * or -1 when there is none. */
static int spare_take(st_objstore_dir_t *ds, const char *dir, char *tmp, size_t tmp_size)
{
    int fd = -1;
    pthread_mutex_lock(&ds->spare_mu);
    for (int i = 0; i < SPARES && fd < 0; i++) {
        spare_t *sp = &ds->spares[i];
        if (sp->state == SPARE_READY && strcmp(sp->dir, dir) == 0) {
            fd = sp->fd;
            snprintf(tmp, tmp_size, "%s", sp->name);
            sp->fd = -1;
            sp->state = SPARE_EMPTY;
        }
    }
    pthread_mutex_unlock(&ds->spare_mu);
    return fd;
}

/* 1 when @key is prepared (or being put through its preparation): no
 * object yet for get, list and del. */
static int prep_hidden(st_objstore_dir_t *ds, const char *key)
{
    int hidden = 0;
    pthread_mutex_lock(&ds->prep_mu);
    for (int i = 0; i < PREPARED && !hidden; i++)
        hidden = ds->preps[i].state != PREP_EMPTY && strcmp(ds->preps[i].key, key) == 0;
    pthread_mutex_unlock(&ds->prep_mu);
    return hidden;
}

/* The slot prepared for @key, now PREP_TAKEN, or NULL (a queued one is
 * cancelled; one being created is waited for).  @thread worker */
static prep_t *prep_take(st_objstore_dir_t *ds, const char *key)
{
    prep_t *found = NULL;
    pthread_mutex_lock(&ds->prep_mu);
    for (;;) {
        found = NULL;
        for (int i = 0; i < PREPARED && !found; i++)
            if (ds->preps[i].state != PREP_EMPTY && strcmp(ds->preps[i].key, key) == 0)
                found = &ds->preps[i];
        /* Creating runs on another worker (never queued behind us): wait. */
        if (!found || found->state != PREP_CREATING)
            break;
        pthread_cond_wait(&ds->prep_cv, &ds->prep_mu);
    }
    if (found && found->state == PREP_QUEUED)
        found->state = PREP_EMPTY; /* its job finds the slot gone */
    if (found && found->state != PREP_READY)
        found = NULL; /* PREP_TAKEN: another put of the key, which fails EXISTS */
    if (found)
        found->state = PREP_TAKEN;
    pthread_mutex_unlock(&ds->prep_mu);
    return found;
}

/* Write the prepared file of slot @p (taken) and flush it: the name is
 * durable already.  A failed put unlinks it, as if never prepared. */
static st_err_t put_prepared(st_objstore_dir_t *ds, prep_t *p, const uint8_t *data, size_t len)
{
    st_err_t err = ST_OK;
    if (write_object(p->fd, data, len) != 0 || fdatasync(p->fd) != 0)
        err = ST_ERR_IO;
    if (close(p->fd) != 0 && err == ST_OK)
        err = ST_ERR_IO;
    if (err != ST_OK)
        unlinkat(ds->rootfd, p->key, 0);
    pthread_mutex_lock(&ds->prep_mu);
    p->fd = -1;
    p->state = PREP_EMPTY;
    pthread_mutex_unlock(&ds->prep_mu);
    return err;
}

/* Write, fsync and publish the temp file; @returns the result code. */
static st_err_t put_into(st_objstore_dir_t *ds, int dfd, const char *dir, const char *name,
                         const uint8_t *data, size_t len)
{
    struct stat st;
    /* Cheap early refusal; the no-replace move below is what guarantees it. */
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
        return ST_ERR_EXISTS;
    char tmp[96];
    int fd = spare_take(ds, dir, tmp, sizeof tmp);
    if (fd < 0)
        fd = tmp_create(ds, dfd, tmp, sizeof tmp);
    if (fd < 0)
        return ST_ERR_IO;
    st_err_t err = ST_OK;
    if (write_object(fd, data, len) != 0 || fsync(fd) != 0)
        err = ST_ERR_IO;
    if (close(fd) != 0 && err == ST_OK)
        err = ST_ERR_IO;
    if (err == ST_OK && link_noreplace(dfd, tmp, name) != 0)
        err = errno == EEXIST ? ST_ERR_EXISTS : ST_ERR_IO;
    if (err != ST_OK) {
        unlinkat(dfd, tmp, 0);
        return err;
    }
    /* The new name must survive a crash before the put is acknowledged. */
    if (fsync(dfd) != 0)
        return ST_ERR_IO;
    return ST_OK;
}

static void put_work(dir_op_t *op)
{
    st_objstore_dir_t *ds = op->ds;
    prep_t *p = prep_take(ds, op->key);
    if (p) {
        op->err = put_prepared(ds, p, op->data, op->len);
        return;
    }
    const char *slash = strrchr(op->key, '/');
    if (!slash) {
        op->err = put_into(ds, ds->rootfd, "", op->key, op->data, op->len);
        return;
    }
    char dir[KEY_MAX + 1];
    size_t dlen = (size_t)(slash - op->key);
    memcpy(dir, op->key, dlen);
    dir[dlen] = '\0';
    if (dir_durable(ds, dir) != 0) {
        op->err = ST_ERR_IO;
        return;
    }
    int dfd = openat(ds->rootfd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        op->err = ST_ERR_IO;
        return;
    }
    op->err = put_into(ds, dfd, dir, slash + 1, op->data, op->len);
    close(dfd);
}

typedef struct spare_job {
    st_objstore_dir_t *ds;
    spare_t *sp; /* reserved (SPARE_FILLING) on the loop */
} spare_job_t;

/* Create the temp file of a reserved spare.  @thread worker */
static void spare_work(void *arg)
{
    spare_job_t *j = arg;
    st_objstore_dir_t *ds = j->ds;
    spare_t *sp = j->sp;
    char name[sizeof sp->name];
    int dfd =
        *sp->dir ? openat(ds->rootfd, sp->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : ds->rootfd;
    int fd = dfd >= 0 ? tmp_create(ds, dfd, name, sizeof name) : -1;
    if (dfd >= 0 && dfd != ds->rootfd)
        close(dfd);
    pthread_mutex_lock(&ds->spare_mu);
    if (fd >= 0) {
        memcpy(sp->name, name, sizeof name);
        sp->fd = fd;
        sp->state = SPARE_READY;
    } else {
        sp->state = SPARE_EMPTY; /* the next put tries again */
    }
    pthread_mutex_unlock(&ds->spare_mu);
}

/* After a put into the directory of @key: reserve a spare there, unless
 * one is already there or being made, and create it on a worker.
 * @thread loop */
static void spare_refill(st_objstore_dir_t *ds, const char *key)
{
    const char *slash = strrchr(key, '/');
    size_t dlen = slash ? (size_t)(slash - key) : 0;
    spare_t *free_sp = NULL;
    pthread_mutex_lock(&ds->spare_mu);
    for (int i = 0; i < SPARES; i++) {
        spare_t *sp = &ds->spares[i];
        if (sp->state == SPARE_EMPTY) {
            if (!free_sp)
                free_sp = sp;
        } else if (strlen(sp->dir) == dlen && memcmp(sp->dir, key, dlen) == 0) {
            free_sp = NULL; /* this directory has one */
            break;
        }
    }
    if (free_sp) {
        memcpy(free_sp->dir, key, dlen);
        free_sp->dir[dlen] = '\0';
        free_sp->state = SPARE_FILLING;
    }
    pthread_mutex_unlock(&ds->spare_mu);
    if (!free_sp)
        return;
    spare_job_t *j = malloc(sizeof(*j));
    if (j)
        *j = (spare_job_t){ds, free_sp};
    if (!j || st_pool_submit(ds->pool, spare_work, free, j) != 0) {
        free(j);
        pthread_mutex_lock(&ds->spare_mu);
        free_sp->state = SPARE_EMPTY;
        pthread_mutex_unlock(&ds->spare_mu);
    }
}

typedef struct prep_job {
    st_objstore_dir_t *ds;
    prep_t *p;
    uint64_t gen;
} prep_job_t;

/* Create the file of a queued preparation and make its name durable.
 * @thread worker */
static void prep_work(void *arg)
{
    prep_job_t *j = arg;
    st_objstore_dir_t *ds = j->ds;
    prep_t *p = j->p;
    char key[KEY_MAX + 1];
    pthread_mutex_lock(&ds->prep_mu);
    bool mine = p->gen == j->gen && p->state == PREP_QUEUED;
    if (mine) {
        p->state = PREP_CREATING;
        memcpy(key, p->key, sizeof key);
    }
    pthread_mutex_unlock(&ds->prep_mu);
    if (!mine)
        return; /* a put came first and cancelled it */
    int fd = -1;
    const char *slash = strrchr(key, '/');
    char dir[KEY_MAX + 1] = "";
    if (slash) {
        memcpy(dir, key, (size_t)(slash - key));
        dir[slash - key] = '\0';
    }
    if (!slash || dir_durable(ds, dir) == 0) {
        int dfd = slash ? openat(ds->rootfd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : ds->rootfd;
        const char *name = slash ? slash + 1 : key;
        if (dfd >= 0) {
            fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
            if (fd >= 0 && fsync(dfd) != 0) {
                close(fd);
                unlinkat(dfd, name, 0);
                fd = -1;
            }
            if (dfd != ds->rootfd)
                close(dfd);
        }
    }
    pthread_mutex_lock(&ds->prep_mu);
    p->fd = fd;
    p->state = fd >= 0 ? PREP_READY : PREP_EMPTY; /* failed: the put goes the usual way */
    pthread_cond_broadcast(&ds->prep_cv);
    pthread_mutex_unlock(&ds->prep_mu);
}

/* st_objstore_prepare: reserve a free slot for @key and create its file on
 * a worker.  A preparation is never given up for another: its put may still
 * be on its way (a put that found its file taken away would fail EXISTS),
 * so one whose put never comes holds its slot until the store is freed,
 * and with every slot so held puts simply go the usual way.
 * @thread loop */
static void dir_prepare(st_objstore_t *os, const char *key)
{
    st_objstore_dir_t *ds = (st_objstore_dir_t *)os;
    if (!key_ok(key))
        return;
    prep_job_t *j = malloc(sizeof *j);
    if (!j)
        return;
    pthread_mutex_lock(&ds->prep_mu);
    prep_t *p = NULL;
    for (int i = 0; i < PREPARED; i++) {
        prep_t *q = &ds->preps[i];
        if (q->state != PREP_EMPTY && strcmp(q->key, key) == 0) {
            p = NULL; /* prepared already */
            break;
        }
        if (q->state == PREP_EMPTY && !p)
            p = q;
    }
    if (p) {
        snprintf(p->key, sizeof p->key, "%s", key);
        p->state = PREP_QUEUED;
        p->gen = ++ds->prep_gen;
        *j = (prep_job_t){ds, p, p->gen};
    }
    pthread_mutex_unlock(&ds->prep_mu);
    if (!p || st_pool_submit(ds->pool, prep_work, free, j) != 0) {
        if (p) {
            pthread_mutex_lock(&ds->prep_mu);
            if (p->gen == j->gen && p->state == PREP_QUEUED)
                p->state = PREP_EMPTY;
            pthread_mutex_unlock(&ds->prep_mu);
        }
        free(j);
    }
}

/* ---------------------------------------------------------------- get */

/* Read up to @n bytes at @off; the bytes read, or -1 with errno. */
static ssize_t read_all(int fd, uint8_t *p, size_t n, uint64_t off)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, p + got, n - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break; /* shorter than fstat said: return what exists */
        got += (size_t)r;
    }
    return (ssize_t)got;
}

/* A large range of a large object -- written with O_DIRECT, so not in the
 * page cache -- read the same way: the 4 KiB-aligned blocks around it into
 * an aligned buffer, handed out from the first byte asked for.  0 when
 * done (op->err says how), -1 when O_DIRECT is not to be had here. */
static int read_direct(dir_op_t *op, int fd, uint64_t avail)
{
    if (set_direct(fd, true) != 0)
        return -1;
    uint64_t from = op->off & ~(uint64_t)(DIRECT_ALIGN - 1);
    uint64_t to = (op->off + avail + DIRECT_ALIGN - 1) & ~(uint64_t)(DIRECT_ALIGN - 1);
    void *buf = NULL;
    if (posix_memalign(&buf, DIRECT_ALIGN, (size_t)(to - from)) != 0) {
        op->err = ST_ERR_NOMEM;
        return 0;
    }
    ssize_t got = read_all(fd, buf, (size_t)(to - from), from);
    int rerr = errno;
    if (set_direct(fd, false) != 0 && got >= 0) {
        free(buf);
        op->err = ST_ERR_IO;
        return 0;
    }
    if (got < 0) {
        free(buf);
        if (rerr == EINVAL)
            return -1; /* an alignment this device does not take */
        op->err = ST_ERR_IO;
        return 0;
    }
    op->buf = buf;
    op->skip = (size_t)(op->off - from);
    op->len = (size_t)got > op->skip ? (size_t)got - op->skip : 0;
    if (op->len > avail)
        op->len = (size_t)avail;
    op->err = ST_OK;
    return 0;
}

/* As read_direct, but straight into the caller's @op->dst when it lies at
 * the same place in a 4 KiB block as @op->off in the file: the 4 KiB blocks
 * inside the range with O_DIRECT, the partial blocks at either end (if any)
 * through the page cache, nothing written outside [dst, dst + avail) -- no
 * aligned buffer of its own to fault in and no copy out of it.  0 when done
 * (op->err says how), -1 when @op->dst is not so placed or O_DIRECT is not
 * to be had here (nothing is promised about @op->dst then). */
static int read_direct_into(dir_op_t *op, int fd, uint64_t avail)
{
    uint64_t from = (op->off + DIRECT_ALIGN - 1) & ~(uint64_t)(DIRECT_ALIGN - 1);
    uint64_t to = (op->off + avail) & ~(uint64_t)(DIRECT_ALIGN - 1);
    if (((uintptr_t)op->dst - op->off) % DIRECT_ALIGN != 0 || to <= from)
        return -1;
    size_t head = (size_t)(from - op->off), mid = (size_t)(to - from);
    size_t tail = (size_t)(op->off + avail - to);
    if (head || tail) /* the partial blocks alone, without the kernel's read-ahead */
        (void)posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
    ssize_t got = head ? read_all(fd, op->dst, head, op->off) : 0;
    if (got < 0 || (size_t)got < head) { /* an error, or shorter than fstat said */
        op->err = got < 0 ? ST_ERR_IO : ST_OK;
        op->len = got < 0 ? 0 : (size_t)got;
        return 0;
    }
    if (set_direct(fd, true) != 0)
        return -1;
    got = read_all(fd, op->dst + head, mid, from);
    int rerr = errno;
    if (set_direct(fd, false) != 0) {
        op->err = ST_ERR_IO;
        return 0;
    }
    if (got < 0 && rerr == EINVAL)
        return -1; /* an alignment this device does not take */
    if (got < 0 || (size_t)got < mid) {
        op->err = got < 0 ? ST_ERR_IO : ST_OK;
        op->len = got < 0 ? 0 : head + (size_t)got;
        return 0;
    }
    got = tail ? read_all(fd, op->dst + head + mid, tail, to) : 0;
    op->err = got < 0 ? ST_ERR_IO : ST_OK;
    op->len = got < 0 ? 0 : head + mid + (size_t)got;
    return 0;
}

static void get_work(dir_op_t *op)
{
    if (prep_hidden(op->ds, op->key)) {
        op->err = ST_ERR_NOT_FOUND;
        return;
    }
    int fd = openat(op->ds->rootfd, op->key, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        op->err = (errno == ENOENT || errno == ENOTDIR) ? ST_ERR_NOT_FOUND : ST_ERR_IO;
        return;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        op->err = ST_ERR_IO;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) { /* a directory is a key prefix, not an object */
        op->err = ST_ERR_NOT_FOUND;
        goto out;
    }
    /* Size the buffer from the file, never from the caller's length. */
    uint64_t size = (uint64_t)st.st_size;
    uint64_t avail = op->off < size ? size - op->off : 0;
    if (op->want < avail)
        avail = op->want;
    if (avail > SIZE_MAX) {
        op->err = ST_ERR_NOMEM;
        goto out;
    }
    bool direct = avail >= DIRECT_MIN && size >= DIRECT_MIN;
    if (direct && op->dst && read_direct_into(op, fd, avail) == 0)
        goto out;
    if (direct && read_direct(op, fd, avail) == 0) {
        if (op->dst && op->err == ST_OK) {
            /* Around the range, aligned, then into place here on the
             * worker rather than by the caller on the loop. */
            memcpy(op->dst, op->buf + op->skip, op->len);
        }
        if (op->dst) {
            free(op->buf);
            op->buf = NULL;
            op->skip = 0;
        }
        goto out;
    }
    if (op->dst) {
        ssize_t got = read_all(fd, op->dst, (size_t)avail, op->off);
        op->err = got < 0 ? ST_ERR_IO : ST_OK;
        op->len = got < 0 ? 0 : (size_t)got;
        goto out;
    }
    op->buf = malloc(avail ? (size_t)avail : 1);
    if (!op->buf) {
        op->err = ST_ERR_NOMEM;
        goto out;
    }
    ssize_t got = read_all(fd, op->buf, (size_t)avail, op->off);
    if (got < 0) {
        op->err = ST_ERR_IO;
        goto out;
    }
    op->len = (size_t)got;
    op->err = ST_OK;
out:
    close(fd);
}

/* ---------------------------------------------------------------- list */

static int info_cmp(const void *a, const void *b)
{
    return strcmp(((const st_obj_info_t *)a)->key, ((const st_obj_info_t *)b)->key);
}

static int list_add(dir_op_t *op, const char *key, const struct stat *st)
{
    if (op->nobjs == op->cap_objs) {
        size_t cap = op->cap_objs ? op->cap_objs * 2 : 64;
        st_obj_info_t *objs = realloc(op->objs, cap * sizeof(*objs));
        if (!objs)
            return -1;
        op->objs = objs;
        op->cap_objs = cap;
    }
    char *copy = strdup(key);
    if (!copy)
        return -1;
    op->objs[op->nobjs++] = (st_obj_info_t){
        .key = copy,
        .size = (uint64_t)st->st_size,
        .mtime_ms = (int64_t)st->st_mtim.tv_sec * 1000 + st->st_mtim.tv_nsec / 1000000,
    };
    return 0;
}

/* 1 when no key under directory path @dir ("x/y/") can sort after
 * @start_after: @dir is not a prefix of it and compares below it. */
static int subtree_before(const char *dir, size_t dlen, const char *start_after)
{
    return start_after && strncmp(start_after, dir, dlen) != 0 && strcmp(start_after, dir) > 0;
}

/*
 * Collect the objects in directory @dfd (taken: closed here), whose path
 * relative to the root is @path[0..@plen) ("" or ending in '/').  Only
 * names starting with @filter (NULL: all) are considered at this level.
 * @returns ST_OK or the first error.
 * @thread worker
 */
static st_err_t list_walk(dir_op_t *op, int dfd, char *path, size_t plen, const char *filter)
{
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return ST_ERR_IO;
    }
    st_err_t err = ST_OK;
    size_t flen = filter ? strlen(filter) : 0;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno != 0)
                err = ST_ERR_IO;
            break;
        }
        const char *name = de->d_name;
        size_t nlen = strlen(name);
        if (!comp_ok(name, nlen) || (filter && strncmp(name, filter, flen) != 0))
            continue; /* ".", "..", temp files */
        if (plen + nlen > KEY_MAX)
            continue; /* too long to be a key */
        memcpy(path + plen, name, nlen + 1);
        struct stat st;
        if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            if (errno == ENOENT)
                continue; /* deleted while we looked */
            err = ST_ERR_IO;
            break;
        }
        if (S_ISREG(st.st_mode)) {
            if ((op->start_after && strcmp(path, op->start_after) <= 0) ||
                prep_hidden(op->ds, path))
                continue;
            if (list_add(op, path, &st) != 0) {
                err = ST_ERR_NOMEM;
                break;
            }
        } else if (S_ISDIR(st.st_mode)) {
            if (plen + nlen + 1 >= KEY_MAX)
                continue; /* no key fits below it */
            path[plen + nlen] = '/';
            path[plen + nlen + 1] = '\0';
            if (subtree_before(path, plen + nlen + 1, op->start_after))
                continue;
            int cfd = openat(dirfd(d), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (cfd < 0) {
                if (errno == ENOENT)
                    continue;
                err = ST_ERR_IO;
                break;
            }
            err = list_walk(op, cfd, path, plen + nlen + 1, NULL);
            if (err != ST_OK)
                break;
        } /* symlinks, sockets, ...: not objects */
    }
    closedir(d);
    path[plen] = '\0';
    return err;
}

static void list_work(dir_op_t *op)
{
    const char *prefix = op->key;
    const char *slash = strrchr(prefix, '/');
    size_t dlen = slash ? (size_t)(slash - prefix) + 1 : 0; /* directory part, with its '/' */
    op->err = ST_OK;
    /* A prefix whose directory part no key can have lists nothing. */
    if (dlen > KEY_MAX || (dlen > 0 && !path_ok(prefix, dlen - 1)))
        return;
    char path[KEY_MAX + 2];
    memcpy(path, prefix, dlen);
    path[dlen] = '\0';
    int dfd = openat(op->ds->rootfd, dlen ? path : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        if (errno != ENOENT && errno != ENOTDIR)
            op->err = ST_ERR_IO;
        return;
    }
    op->err = list_walk(op, dfd, path, dlen, prefix + dlen);
    if (op->err != ST_OK)
        return;
    /* Byte order of whole keys (as S3): "a-b" < "a/b", so directories cannot
     * be listed in walk order. */
    if (op->nobjs > 1)
        qsort(op->objs, op->nobjs, sizeof(*op->objs), info_cmp);
    if (op->nobjs > op->max_keys) {
        for (size_t i = op->max_keys; i < op->nobjs; i++)
            free((char *)op->objs[i].key);
        op->nobjs = op->max_keys;
        op->more = true;
    }
}

/* ---------------------------------------------------------------- del */

static void del_work(dir_op_t *op)
{
    st_objstore_dir_t *ds = op->ds;
    if (prep_hidden(ds, op->key)) {
        op->err = ST_OK; /* no object yet: nothing to delete */
        return;
    }
    if (unlinkat(ds->rootfd, op->key, 0) != 0) {
        /* Missing (or a directory, which is no object): nothing to delete. */
        op->err = (errno == ENOENT || errno == ENOTDIR || errno == EISDIR) ? ST_OK : ST_ERR_IO;
        return;
    }
    char dir[KEY_MAX + 1];
    const char *slash = strrchr(op->key, '/');
    size_t dlen = slash ? (size_t)(slash - op->key) : 0;
    memcpy(dir, op->key, dlen);
    dir[dlen] = '\0';
    op->err = fsync_dir(ds->rootfd, dir) == 0 ? ST_OK : ST_ERR_IO;
}

/* ---------------------------------------------------------------- sync */

static void sync_work(dir_op_t *op)
{
    st_objstore_dir_t *ds = op->ds;
    if (prep_hidden(ds, op->key)) {
        op->err = ST_ERR_NOT_FOUND;
        return;
    }
    int fd = openat(ds->rootfd, op->key, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        op->err = (errno == ENOENT || errno == ENOTDIR) ? ST_ERR_NOT_FOUND : ST_ERR_IO;
        return;
    }
    struct stat st;
    int sr = fstat(fd, &st);
    if (sr != 0 || !S_ISREG(st.st_mode)) {
        /* a directory is a key prefix, not an object */
        op->err = sr == 0 && S_ISDIR(st.st_mode) ? ST_ERR_NOT_FOUND : ST_ERR_IO;
        close(fd);
        return;
    }
    int rc = fsync(fd);
    close(fd);
    char dir[KEY_MAX + 1];
    const char *slash = strrchr(op->key, '/');
    size_t dlen = slash ? (size_t)(slash - op->key) : 0;
    memcpy(dir, op->key, dlen);
    dir[dlen] = '\0';
    /* The key's directories may be a crashed writer's too. */
    if (rc == 0 && dlen)
        rc = dir_durable(ds, dir);
    if (rc == 0)
        rc = fsync_dir(ds->rootfd, dir);
    op->err = rc == 0 ? ST_OK : ST_ERR_IO;
}

/* ---------------------------------------------------------------- plumbing */

static void op_free(dir_op_t *op)
{
    free(op->key);
    free(op->buf);
    free(op->start_after);
    for (size_t i = 0; i < op->nobjs; i++)
        free((char *)op->objs[i].key);
    free(op->objs);
    free(op);
}

static void op_work(void *arg)
{
    dir_op_t *op = arg;
    if (op->err != ST_OK)
        return; /* rejected before submit; only the callback runs */
    switch (op->kind) {
    case OP_PUT:
        put_work(op);
        break;
    case OP_GET:
        get_work(op);
        break;
    case OP_LIST:
        list_work(op);
        break;
    case OP_DEL:
        del_work(op);
        break;
    case OP_SYNC:
        sync_work(op);
        break;
    }
}

static void op_after(void *arg)
{
    dir_op_t *op = arg;
    switch (op->kind) {
    case OP_PUT:
        if (op->err == ST_OK)
            spare_refill(op->ds, op->key); /* first: the callback may free the store */
        op->cb.done(op->err, op->arg);
        break;
    case OP_DEL:
    case OP_SYNC:
        op->cb.done(op->err, op->arg);
        break;
    case OP_GET:
        if (op->err == ST_OK)
            op->cb.data(ST_OK, op->dst ? op->dst : op->buf + op->skip, op->len, op->arg);
        else
            op->cb.data(op->err, NULL, 0, op->arg);
        break;
    case OP_LIST:
        if (op->err == ST_OK)
            op->cb.list(ST_OK, op->objs, op->nobjs, op->more, op->arg);
        else
            op->cb.list(op->err, NULL, 0, false, op->arg);
        break;
    }
    op_free(op);
}

/* A new op on @os for @key (copied; may be NULL); a bad key sets ST_ERR_INVALID
 * so that the error arrives through the callback. */
static dir_op_t *op_new(st_objstore_t *os, op_kind_t kind, const char *key, void *arg)
{
    dir_op_t *op = calloc(1, sizeof(*op));
    if (!op)
        return NULL;
    op->ds = (st_objstore_dir_t *)os;
    op->kind = kind;
    op->arg = arg;
    if (kind == OP_LIST || key_ok(key)) {
        op->key = strdup(key ? key : "");
        if (!op->key) {
            free(op);
            return NULL;
        }
    } else {
        op->err = ST_ERR_INVALID;
    }
    return op;
}

static int op_submit(dir_op_t *op)
{
    if (st_pool_submit(op->ds->pool, op_work, op_after, op) != 0) {
        op_free(op);
        return -1;
    }
    return 0;
}

static int dir_put(st_objstore_t *os, const char *key, const uint8_t *data, size_t len,
                   st_done_cb cb, void *arg)
{
    dir_op_t *op = op_new(os, OP_PUT, key, arg);
    if (!op)
        return -1;
    op->cb.done = cb;
    op->data = data; /* borrowed: put_work reads it, op_free leaves it alone */
    op->len = len;
    return op_submit(op);
}

static int dir_get_into(st_objstore_t *os, const char *key, uint64_t off, uint64_t len,
                        uint8_t *dst, st_data_cb cb, void *arg)
{
    dir_op_t *op = op_new(os, OP_GET, key, arg);
    if (!op)
        return -1;
    op->cb.data = cb;
    op->off = off;
    op->want = len;
    op->dst = dst; /* NULL: a buffer of the op's own; else the worker writes the caller's */
    return op_submit(op);
}

static int dir_get_range(st_objstore_t *os, const char *key, uint64_t off, uint64_t len,
                         st_data_cb cb, void *arg)
{
    return dir_get_into(os, key, off, len, NULL, cb, arg);
}

static int dir_list(st_objstore_t *os, const char *prefix, const char *start_after, size_t max_keys,
                    st_list_cb cb, void *arg)
{
    dir_op_t *op = op_new(os, OP_LIST, prefix, arg);
    if (!op)
        return -1;
    op->cb.list = cb;
    op->max_keys = max_keys;
    if (start_after && !(op->start_after = strdup(start_after))) {
        op_free(op);
        return -1;
    }
    return op_submit(op);
}

static int dir_del(st_objstore_t *os, const char *key, st_done_cb cb, void *arg)
{
    dir_op_t *op = op_new(os, OP_DEL, key, arg);
    if (!op)
        return -1;
    op->cb.done = cb;
    return op_submit(op);
}

static int dir_sync(st_objstore_t *os, const char *key, st_done_cb cb, void *arg)
{
    dir_op_t *op = op_new(os, OP_SYNC, key, arg);
    if (!op)
        return -1;
    op->cb.done = cb;
    return op_submit(op);
}

static void dir_free(st_objstore_t *os)
{
    st_objstore_dir_t *ds = (st_objstore_dir_t *)os;
    st_pool_free(ds->pool); /* runs the queued work and every remaining callback */
    for (int i = 0; i < SPARES; i++) {
        spare_t *sp = &ds->spares[i];
        if (sp->state != SPARE_READY)
            continue;
        close(sp->fd);
        char path[sizeof sp->dir + sizeof sp->name + 1];
        snprintf(path, sizeof path, "%s%s%s", sp->dir, *sp->dir ? "/" : "", sp->name);
        unlinkat(ds->rootfd, path, 0);
    }
    for (int i = 0; i < PREPARED; i++) { /* never put: not left behind */
        prep_t *p = &ds->preps[i];
        if (p->state != PREP_READY)
            continue;
        close(p->fd);
        unlinkat(ds->rootfd, p->key, 0);
    }
    if (ds->rootfd >= 0)
        close(ds->rootfd);
    pthread_mutex_destroy(&ds->spare_mu);
    pthread_mutex_destroy(&ds->dirs_mu);
    pthread_mutex_destroy(&ds->prep_mu);
    pthread_cond_destroy(&ds->prep_cv);
    dirset_deinit(&ds->dirs);
    free(ds);
}

static const st_objstore_ops_t dir_ops = {
    .name = "dir",
    .put = dir_put,
    .get_range = dir_get_range,
    .get_into = dir_get_into,
    .list = dir_list,
    .del = dir_del,
    .prepare = dir_prepare,
    .sync = dir_sync,
    .free = dir_free,
};

/* mkdir -p @root, fsyncing the parent of each directory it creates. */
static int mkdir_root(const char *root)
{
    size_t n = strlen(root);
    char *path = strdup(root);
    if (!path)
        return -1;
    int rc = 0;
    for (size_t i = 1; i <= n && rc == 0; i++) {
        if (i < n && path[i] != '/')
            continue;
        if (i < n && path[i - 1] == '/')
            continue; /* "a//b" */
        path[i] = '\0';
        if (mkdir(path, 0755) == 0) {
            char *slash = strrchr(path, '/');
            const char *parent = slash == path ? "/" : slash ? path : ".";
            if (slash && slash != path)
                *slash = '\0';
            int fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (fd < 0 || fsync(fd) != 0)
                rc = -1;
            if (fd >= 0)
                close(fd);
            if (slash && slash != path)
                *slash = '/';
        } else if (errno != EEXIST) {
            rc = -1;
        }
        if (i < n)
            path[i] = '/';
    }
    int e = errno;
    free(path);
    errno = e;
    return rc;
}

st_objstore_t *st_objstore_dir_new(struct event_base *base, const char *root, int nthreads,
                                   char *errstr, size_t errstr_size)
{
    if (!root || !*root) {
        snprintf(errstr, errstr_size, "object store directory: empty path");
        return NULL;
    }
    if (mkdir_root(root) != 0) {
        snprintf(errstr, errstr_size, "object store directory %s: %s", root, strerror(errno));
        return NULL;
    }
    int rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0) {
        snprintf(errstr, errstr_size, "object store directory %s: %s", root, strerror(errno));
        return NULL;
    }
    st_objstore_dir_t *ds = calloc(1, sizeof(*ds));
    if (!ds) {
        close(rootfd);
        snprintf(errstr, errstr_size, "object store directory %s: out of memory", root);
        return NULL;
    }
    ds->os.ops = &dir_ops;
    ds->rootfd = rootfd;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ds->tmp_salt = ((uint64_t)ts.tv_sec << 30) ^ (uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)ds;
    atomic_init(&ds->tmp_seq, 0);
    pthread_mutex_init(&ds->dirs_mu, NULL);
    pthread_mutex_init(&ds->spare_mu, NULL);
    for (int i = 0; i < SPARES; i++)
        ds->spares[i].fd = -1;
    pthread_mutex_init(&ds->prep_mu, NULL);
    pthread_cond_init(&ds->prep_cv, NULL);
    for (int i = 0; i < PREPARED; i++)
        ds->preps[i].fd = -1;
    ds->pool = st_pool_new(base, nthreads, "nh-objdir");
    if (!ds->pool) {
        snprintf(errstr, errstr_size, "object store directory %s: cannot start worker threads",
                 root);
        close(rootfd);
        pthread_mutex_destroy(&ds->spare_mu);
        pthread_mutex_destroy(&ds->dirs_mu);
        pthread_mutex_destroy(&ds->prep_mu);
        pthread_cond_destroy(&ds->prep_cv);
        free(ds);
        return NULL;
    }
    return &ds->os;
}
