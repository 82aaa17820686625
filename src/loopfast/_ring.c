/* loopfast._ring: shared-memory byte rings for fast-path connections.
 *
 * One sealed memfd per connection holds a header page and two rings, one per
 * direction. Each end of the connection is a Channel: it produces into one
 * ring (tx) and consumes from the other (rx).
 *
 * Ownership and ordering (the invariants this file keeps):
 *
 * - head (bytes ever published) is stored only by the ring's producer, tail
 *   (bytes ever consumed) only by its consumer. Each side keeps its own
 *   positions in its side state (side_state: a slot of a MAP_SHARED|
 *   MAP_ANONYMOUS page, see slot_alloc) and never reads them back from the
 *   header, so a peer scribbling over the header cannot move our own
 *   position. fork() hands the side state on, the peer can never map it.
 * - Every process holding one end shares that end's positions and direction
 *   locks (process-shared, robust pthread mutexes in the side page, taken
 *   after the per-process lock, waited for without the GIL in LIVENESS_NS
 *   steps so close() and Ctrl-C end the wait). Two processes using one end
 *   behave as two holders of one TCP socket: each call's bytes go to
 *   whichever process calls first, whole and in order, none duplicated or
 *   lost; readiness (r) is shared too and stays level-true, as the call that
 *   empties the ring drains r. A holder killed inside a call hands the lock
 *   on (EOWNERDEAD): the positions it stored stand, bytes it had copied out
 *   went with it (as read(2) then death). A process killed between taking a
 *   lock and its first store leaves nothing to repair.
 * - The producer copies payload, then stores head with release order; the
 *   consumer loads head with acquire order, then copies. Symmetrically for
 *   tail and free space.
 * - Every position read from shared memory is validated before use: the
 *   peer's position may only move forward, and head - tail must lie in
 *   [0, size]. A violation resets the connection (ECONNRESET, "corrupted");
 *   it never steers a memcpy. Ring sizes and offsets come from the handshake
 *   and the memfd's sealed size, never from shared memory.
 * - Receive window (TCP's): window is stored only by the ring's consumer
 *   (create_memfd writes the first value, before either Channel exists: the
 *   client's estimate of the server's buffer), and loaded by the producer
 *   with acquire order, clamped to [0, ring size]: a producer never has more
 *   than min(window, size) bytes published and unconsumed (tx_room), and every
 *   send and writability test (tx_ready, ready(), the filler logic) counts
 *   that room, not the ring's free space. A window below what is in flight
 *   gives room 0; a zero window stalls the producer as TCP's zero window does.
 *   Any value is safe: a peer can stall us with it, never corrupt us. A
 *   consumer that raises its window wakes waiting producers exactly as one
 *   that frees space does (store, fence, take producer_waiting).
 * - Waking (readiness that select/poll/epoll see, level-true):
 *   * Each side X has a socketpair (r, w); r is X's fileno(). X keeps w, and
 *     the peer holds a copy of w. A byte in r's queue ("bell") makes X
 *     readable; a full send buffer on r ("filler", r -> w) makes X
 *     unwritable. Only X holds r, and nothing ever shuts an r down, so the
 *     peer's copy of X's w reports POLLHUP exactly when X's r is closed for
 *     the last time (X's last close, or its death): that is how a side learns
 *     its peer is gone (SPEC F11), and what close() relies on.
 *   * bells is a token per ring: a ringer that turns it from 0 to 1 sends one
 *     byte, so 1 means "a bell is queued or on its way". The consumer empties
 *     its r (every byte: anyone holding a copy of its w, the peer included,
 *     can put foreign bytes there), then stores 0, then looks at the ring
 *     again. It empties r when a bell is held, and whenever a call found
 *     nothing and r may hold bytes (a timeout; an EAGAIN whose one poll of r
 *     and the peer's w found r readable): a readable r with an empty ring is
 *     drained by the first recv that sees it, so foreign bytes cost one
 *     spurious wake-up, never a spin. With the token at 0 and r seen empty
 *     there is nothing to drain (a bell sent after that look took the token
 *     first), so an empty non-blocking recv costs that one poll. An extra byte (a ringer's, arriving after the
 *     drain) is harmless in the same way; a missing one cannot happen: the
 *     token is 0 only once r was emptied, and the look after the store sees
 *     every ringer's data that came before. A peer that pins the token at a
 *     non-zero value only stops its own bells.
 *   * consumer_waiting says what a producer must do after it publishes
 *     (full fence between its head store and this load: the Dekker pairing
 *     with the consumer's store, fence, load of head): CW_SPINNING (inside
 *     recv, spinning) nothing; CW_PARKED (asleep in recv on this very word,
 *     a shared futex) FUTEX_WAKE; CW_OUTSIDE (not in recv, perhaps in
 *     select) ring a bell unless the token is taken. On leaving recv the
 *     consumer makes readiness true (ring a bell at itself) when it leaves
 *     data, EOF or an error behind, and false (empty r, give the token back,
 *     re-check) when the ring is empty. A parked recv also wakes for close()
 *     and SHUT_RD from another thread, the peer's SHUT_WR, and a dead peer
 *     (the watcher's mark_dead, or its own check every LIVENESS_NS).
 *   * An event loop's spin (spin_ready, for aio_selector.py) acts as a recv
 *     that takes no bytes: it holds both rx locks (taken without waiting; a
 *     busy one means a call that keeps readiness itself), so it alone owns
 *     consumer_waiting; it stores CW_SPINNING, fences and looks; on leaving
 *     it stores CW_OUTSIDE, fences and looks again. A publish it saw, or that
 *     came in between, is reported to the loop instead of rung: the loop's
 *     recv then settles r as any recv does, and a loop that stops watching
 *     the channel first calls settle() (which rings the bell it owes). The
 *     close() of another thread waits for the spin's rx_lock; the spin sees
 *     closed and ends.
 *   * producer_waiting: a producer that finds no room (ring full, or window
 *     reached) fills its r until EAGAIN (unwritable), then sets
 *     producer_waiting, fences, and re-checks its room (tail and window). A
 *     consumer that frees space or raises its window fences and, when it
 *     takes producer_waiting (exchange), drains the producer's filler from
 *     its copy of the producer's w, which makes the producer writable.
 * - Giving pages back: a producer whose ring the consumer has drained, and
 *   that has published more than PUNCH_AFTER bytes since the last time,
 *   punches the whole tx ring out of the memfd (MADV_REMOVE), only when the
 *   connection idles (trim(), which the background thread calls for a ring
 *   that carried nothing for a whole tick). It may, with no word to the
 *   consumer: it holds the tx locks, so nobody else moves head; tail == head
 *   (loaded with acquire order, after the consumer's release store that
 *   follows its last copy) means the consumer has read every byte and will
 *   read nothing until head moves again; and our next bytes are written after
 *   the punch returns, before head is published. The hot path pays nothing
 *   for it. A peer that never trims keeps only pages of a ring this side
 *   accepted the size of.
 * - Last close (hang_up): after closing its r, a side polls its own w; POLLHUP
 *   there means no copy of r is left anywhere (no dup, no fork()ed holder), and
 *   only then it tells the peer in the header: WR_SHUT (and RESET when it
 *   leaves the peer's bytes unread, or SO_LINGER (1, 0) asked for it) on its
 *   tx ring, RD_SHUT on its rx ring, then a bell, a futex wake and a drain of
 *   the peer's filler. A side that dies never tells; its peer learns from the
 *   hang-up of its copy of the dead side's w, as before.
 * - Filler is NUL bytes, and only its side writes into r -> w. Anything else
 *   found in a w queue (drain_checked, inspect_wakeups) was written to that
 *   side's fd by its program: FOREIGN goes into both rings' flags (both sides'
 *   calls then fail with ECONNRESET naming the cause), both are woken, and
 *   that w's reading side is shut, so a writer blocked on the fd gets EPIPE.
 * - The GIL is released only to spin or park; the shared mapping lives until
 *   the Channel is closed, and close() first takes both direction locks, so
 *   no thread is inside a ring when it is unmapped. close() wakes parked
 *   threads of this process first (a bell at itself, draining its filler).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include "pythread.h"

#include <pthread.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <linux/futex.h>
#include <sys/syscall.h>

#ifndef MFD_CLOEXEC
#define MFD_CLOEXEC 0x0001U
#define MFD_ALLOW_SEALING 0x0002U
#endif
#ifndef F_ADD_SEALS
#define F_ADD_SEALS 1033
#define F_GET_SEALS 1034
#define F_SEAL_SEAL 0x0001
#define F_SEAL_SHRINK 0x0002
#define F_SEAL_GROW 0x0004
#endif
#ifndef POLLRDHUP
#define POLLRDHUP 0x2000
#endif

#define CACHELINE 64
#define HEADER_SIZE 4096
#define MAGIC 0x3152464cU /* "LFR1" */
#define MIN_RING 4096ULL
#define MAX_RING (64ULL << 20)
#define REQUIRED_SEALS (F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW)
#define LIVENESS_NS 50000000LL /* a parked recv looks at its peer at least this often */
#define MAX_SLOTS 64 /* slots of an arena (a bit each in a uint64_t) */
#define PUNCH_AFTER (64u << 10)  /* a ring that drains after this many bytes gives its pages back */

/* consumer_waiting, per ring (written by the consumer, read by the producer):
 * what a producer must do after it publishes so the consumer learns of it. */
#define CW_SPINNING 0u /* inside recv, spinning: nothing */
#define CW_OUTSIDE 1u  /* not in recv (maybe in select): ring a bell */
#define CW_PARKED 2u   /* parked on the futex word itself: FUTEX_WAKE */

/* flags, per ring */
#define WR_SHUT 0x1u  /* producer: no more data (shutdown SHUT_WR or close) */
#define RD_SHUT 0x2u  /* consumer: closed; sends fail with EPIPE */
#define RESET 0x4u    /* producer closed with unread data: consumer gets ECONNRESET */
#define FOREIGN 0x8u  /* bytes were written to a wake-up socket behind the socket object */

static const char FOREIGN_WHY[] =
    "loopfast reset this ring connection: bytes were written to its fd behind the socket "
    "object (os.write, os.sendfile, or a socket made from fileno() in another process); "
    "a ring connection's fd carries no data, and loopfast will not lose them silently. "
    "Code that writes the fd needs fast_path='stream'";

typedef struct {
    _Atomic uint64_t head;
    char pad0[CACHELINE - 8];
    _Atomic uint64_t tail;
    char pad1[CACHELINE - 8];
    _Atomic uint32_t consumer_waiting;
    _Atomic uint32_t bells;
    _Atomic uint32_t window; /* consumer: bytes it lets the producer have in flight */
    char pad2[CACHELINE - 12];
    _Atomic uint32_t producer_waiting;
    _Atomic uint32_t flags;
    char pad3[CACHELINE - 8];
} ring_ctl;

typedef struct {
    uint32_t magic;
    uint32_t version;
    _Atomic uint32_t server_attached; /* the server made its Channel: it accepted us */
    _Atomic uint32_t server_gone;     /* arena slot: the server's last close is over */
    _Atomic uint32_t server_left;     /* arena slot: the server no longer touches the rings */
    _Atomic uint32_t client_gone;     /* arena slot: nor does the client */
    _Atomic uint32_t generation;      /* arena slot: claims so far (Channel.generation) */
    char pad[CACHELINE - 28];
    ring_ctl ring[2]; /* [0] client -> server, [1] server -> client */
} shm_header;

_Static_assert(sizeof(shm_header) <= HEADER_SIZE, "header fits its page");
_Static_assert(sizeof(ring_ctl) == 4 * CACHELINE, "ring_ctl is four cache lines");
_Static_assert(MAX_RING <= UINT32_MAX, "a window fits its 32 bits");

/* What every process holding one end shares, and the peer never sees: our
 * positions and the direction locks. A MAP_SHARED|MAP_ANONYMOUS page made with
 * the Channel, so fork() hands it on and nothing else can map it. */
typedef struct {
    pthread_mutex_t rx_mu, tx_mu; /* process-shared, robust */
    uint64_t rx_tail;      /* our consumer position */
    uint64_t rx_head_seen; /* last validated producer position */
    uint64_t tx_head;      /* our producer position */
    uint64_t tx_tail_seen;
    uint64_t tx_punched;   /* tx_head when the tx ring's pages were last given back */
} side_state;

_Static_assert(sizeof(side_state) <= 4096, "side state fits its page");

/* ---- side states: slots in shared anonymous pages ------------------------
 *
 * A page per Channel cost a mapping (mmap, munmap, a VMA) and 4 KiB of RSS per
 * side; side states are ~128 bytes, so one page holds SLAB_SLOTS of them.
 * fork() shares every page with the child, which holds copies of the
 * connections of the time: from then on neither process may hand a slot of
 * those pages to a new Channel (the other may still use it), so a fork seals
 * every page in both processes (pthread_atfork) and new Channels get slots in
 * new pages. A page is unmapped when this process no longer uses any of its
 * slots (other processes' mappings keep the memory alive for them). Touched
 * only with the GIL held (Channel init and dealloc), so no lock. */
#define SLOT_SIZE 128
#define SLAB_SLOTS (4096 / SLOT_SIZE)
_Static_assert(sizeof(side_state) <= SLOT_SIZE, "a side state fits its slot");

typedef struct slab {
    struct slab *next;
    char *page;
    uint32_t used; /* bit i: slot i is ours */
    int sealed;    /* shared with another process by fork(): never reused */
} slab;

static slab *slabs;

static void seal_slabs(void) {
    for (slab *sl = slabs; sl != NULL; sl = sl->next)
        sl->sealed = 1;
}

static side_state *slot_alloc(void) {
    slab *sl = slabs;
    while (sl != NULL && (sl->sealed || sl->used == (uint32_t)((1ULL << SLAB_SLOTS) - 1)))
        sl = sl->next;
    if (sl == NULL) {
        sl = calloc(1, sizeof *sl);
        if (sl == NULL)
            return NULL;
        sl->page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (sl->page == MAP_FAILED) {
            free(sl);
            return NULL;
        }
        sl->next = slabs;
        slabs = sl;
    }
    int i = __builtin_ctz(~sl->used);
    sl->used |= 1u << i;
    side_state *st = (side_state *)(sl->page + (size_t)i * SLOT_SIZE);
    memset(st, 0, sizeof *st);
    return st;
}

static void slot_free(side_state *st) {
    for (slab **link = &slabs; *link != NULL; link = &(*link)->next) {
        slab *sl = *link;
        if ((char *)st < sl->page || (char *)st >= sl->page + 4096)
            continue;
        sl->used &= ~(1u << (((char *)st - sl->page) / SLOT_SIZE));
        /* Keep one unsealed page for the next Channel; give the rest back. */
        if (sl->used == 0 && (sl->sealed || sl != slabs)) {
            *link = sl->next;
            munmap(sl->page, 4096);
            free(sl);
        }
        return;
    }
}

/* One memfd holding the rings of many connections between one client process
 * and the server processes of one destination (Arena, below). */
typedef struct {
    PyObject_HEAD
    char *base;
    size_t len, slot_len;
    uint64_t c2s, s2c;
    uint32_t slots;
    uint64_t claimed; /* client: bit i: slot i was claimed, its Channel not made yet */
    uint64_t used;    /* bit i: a Channel of this process uses slot i */
    uint64_t lost;    /* client: slot i is never claimed again */
} Arena;

static PyTypeObject *ArenaType; /* set once by ring_exec */

typedef struct {
    PyObject_HEAD
    side_state *st;
    char *base;
    size_t map_len;
    ring_ctl *rx, *tx;
    char *rx_data, *tx_data;
    uint64_t rx_size, tx_size;
    int own_r, own_w, peer_w;
    Arena *arena;        /* the rings are slot `slot` of it (NULL: a mapping of our own) */
    uint32_t slot;
    uint32_t generation; /* the slot's generation when we attached */
    int64_t timeout_ns;  /* -1 blocks, 0 never waits */
    int64_t spin_ns;     /* current spin budget */
    int64_t spin_max_ns; /* adaptive ceiling; busy-poll sets it */
    unsigned probes;     /* waits since the budget shrank to nothing */
    int64_t liveness_ns; /* a parked recv looks at its peer at least this often */
    int adaptive;
    int closed;     /* close() called: calls fail with EBADF */
    int rd_shut;    /* our own shutdown(SHUT_RD) */
    int peer_dead;  /* our copy of the peer's w reported POLLRDHUP */
    int dead_told;  /* the reset a dead peer owes us was raised once */
    int sent_after_close; /* a send to a closed peer was taken (TCP takes one) or a reset seen */
    int reset_seen; /* the connection was reset (TCP's state is CLOSE: getpeername ENOTCONN) */
    int abortive;   /* SO_LINGER (1, 0): our last close resets the peer, as TCP's abortive close */
    int server;
    int r_gone;     /* hang_up saw our r closed everywhere: bells at ourselves reach nobody */
    int w_queued;   /* hang_up saw bytes waiting in our w (close() must look at them) */
    int64_t rcvtimeo_ns, sndtimeo_ns; /* SO_RCVTIMEO / SO_SNDTIMEO: blocking calls give EAGAIN */
    int fault;      /* sticky errno after corruption */
    const char *fault_why;
    uint64_t bytes_in, bytes_out;
    PyThread_type_lock rx_lock, tx_lock;
    PyObject *weakrefs; /* the peer watcher holds weak references */
} Channel;

/* ---- small helpers ------------------------------------------------------ */

/* A fresh header for rings of these sizes, each ring's receive window as given
 * (-1 or more than the ring: the whole ring). */
static void fresh_header(shm_header *h, uint64_t c2s, uint64_t s2c, const long long windows[2]) {
    memset(h, 0, sizeof *h);
    h->magic = MAGIC;
    h->version = 1;
    for (int i = 0; i < 2; i++) {
        unsigned long long size = i ? s2c : c2s, window = (unsigned long long)windows[i];
        atomic_init(&h->ring[i].consumer_waiting, CW_OUTSIDE);
        atomic_init(&h->ring[i].window, (uint32_t)(windows[i] < 0 || window > size ? size : window));
    }
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Shared (not private) futexes: the word lives in memory both processes map. */
static int futex_wait(_Atomic uint32_t *word, uint32_t expect, int64_t timeout_ns) {
    struct timespec ts, *tp = NULL;
    if (timeout_ns >= 0) {
        ts.tv_sec = (time_t)(timeout_ns / 1000000000LL);
        ts.tv_nsec = (long)(timeout_ns % 1000000000LL);
        tp = &ts;
    }
    return (int)syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT, expect, tp, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *word) {
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* Wake a consumer parked on its word. The word changes first (PARKED ->
 * SPINNING, by compare-exchange), so a consumer that stored PARKED but has not
 * reached futex_wait yet finds the value changed there and does not sleep:
 * a wake-up without the change could be lost. Returns the value seen. */
static uint32_t wake_parked(_Atomic uint32_t *word) {
    uint32_t seen = CW_PARKED;
    if (atomic_compare_exchange_strong(word, &seen, CW_SPINNING)) {
        futex_wake(word);
        return CW_PARKED;
    }
    return seen;
}

static PyObject *raise_errno(int err, const char *why) {
    if (why != NULL) {
        PyObject *args = Py_BuildValue("(is)", err, why);
        if (args != NULL) {
            PyErr_SetObject(PyExc_OSError, args); /* OSError picks the subclass */
            Py_DECREF(args);
        }
        return NULL;
    }
    errno = err;
    return PyErr_SetFromErrno(PyExc_OSError);
}

static PyObject *raise_timeout(void) {
    PyErr_SetString(PyExc_TimeoutError, "timed out");
    return NULL;
}

static void set_fault(Channel *ch, const char *why) {
    if (!ch->fault) {
        ch->fault = ECONNRESET;
        ch->fault_why = why;
    }
}

/* Bytes waiting in rx, validated; -1 after marking a fault. */
static int64_t rx_avail(Channel *ch) {
    uint64_t head = atomic_load_explicit(&ch->rx->head, memory_order_acquire);
    if (head < ch->st->rx_head_seen || head - ch->st->rx_tail > ch->rx_size) {
        set_fault(ch, "the peer corrupted the shared ring (impossible producer position); "
                      "connection reset");
        return -1;
    }
    ch->st->rx_head_seen = head;
    return (int64_t)(head - ch->st->rx_tail);
}

/* Free space in tx, validated; -1 after marking a fault. */
static int64_t tx_free(Channel *ch) {
    uint64_t tail = atomic_load_explicit(&ch->tx->tail, memory_order_acquire);
    if (tail < ch->st->tx_tail_seen || tail > ch->st->tx_head || ch->st->tx_head - tail > ch->tx_size) {
        set_fault(ch, "the peer corrupted the shared ring (impossible consumer position); "
                      "connection reset");
        return -1;
    }
    ch->st->tx_tail_seen = tail;
    return (int64_t)(ch->tx_size - (ch->st->tx_head - tail));
}

/* The peer's receive window, clamped to [0, tx ring size]: any value is safe. */
static uint64_t tx_window(Channel *ch) {
    uint64_t window = atomic_load_explicit(&ch->tx->window, memory_order_acquire);
    return window < ch->tx_size ? window : ch->tx_size;
}

/* Bytes we may publish now: the window less what is in flight (never below 0);
 * -1 after marking a fault. Every send and every writability test uses this. */
static int64_t tx_room(Channel *ch) {
    int64_t free = tx_free(ch);
    if (free < 0)
        return -1;
    uint64_t in_flight = ch->tx_size - (uint64_t)free, window = tx_window(ch);
    return in_flight < window ? (int64_t)(window - in_flight) : 0;
}

static void copy_out(Channel *ch, char *dst, uint64_t from, size_t n) {
    uint64_t at = from & (ch->rx_size - 1);
    size_t first = (size_t)(ch->rx_size - at) < n ? (size_t)(ch->rx_size - at) : n;
    memcpy(dst, ch->rx_data + at, first);
    if (n > first)
        memcpy(dst + first, ch->rx_data, n - first);
}

static void copy_in(Channel *ch, const char *src, size_t n) {
    uint64_t at = ch->st->tx_head & (ch->tx_size - 1);
    size_t first = (size_t)(ch->tx_size - at) < n ? (size_t)(ch->tx_size - at) : n;
    memcpy(ch->tx_data + at, src, first);
    if (n > first)
        memcpy(ch->tx_data, src + first, n - first);
}

/* Ring a bell at the side whose r queue `w` feeds. *bells is a token: whoever
 * turns it from 0 to 1 sends one byte, so 1 means "a bell is queued or on its
 * way"; the consumer turns it back to 0 only after emptying its r. */
static void ring_bell(int w, _Atomic uint32_t *bells) {
    uint32_t none = 0;
    if (w < 0 || !atomic_compare_exchange_strong(bells, &none, 1))
        return;
    char byte = '!';
    if (send(w, &byte, 1, MSG_DONTWAIT | MSG_NOSIGNAL) != 1)
        atomic_store(bells, 0); /* r is gone, or its queue is full (then it is readable) */
}

/* Empty our r's queue: our bells, and any byte someone else put there (the
 * peer holds a copy of our w). Bounded: a peer that keeps writing only keeps
 * us readable, as a TCP peer that keeps sending does. Returns bytes taken. */
static size_t drain_r(Channel *ch) {
    char scratch[4096];
    size_t taken = 0;
    for (int i = 0; i < 64; i++) {
        ssize_t got = recv(ch->own_r, scratch, sizeof scratch, MSG_DONTWAIT);
        if (got <= 0)
            break;
        taken += (size_t)got;
        if ((size_t)got < sizeof scratch)
            break;
    }
    return taken;
}

/* Filler is NUL bytes: anything else in *n* bytes (n <= 0: none) was not ours. */
static int not_filler(const char *buf, ssize_t n) {
    for (ssize_t k = 0; k < n; k++)
        if (buf[k] != 0)
            return 1;
    return 0;
}

/* Empty a w socket's queue of filler: makes the side that filled it writable.
 * Filler is NUL bytes; anything else was written to that side's fd by its
 * program (os.write on fileno()), which a ring cannot carry. Returns 1 then. */
static int drain_filler(int w) {
    char scratch[4096];
    int foreign = 0;
    for (int i = 0; i < 1024; i++) {
        ssize_t got = recv(w, scratch, sizeof scratch, MSG_DONTWAIT);
        if (got <= 0)
            break;
        foreign = foreign || not_filler(scratch, got);
    }
    return foreign;
}

/* Bytes were written to one side's fd behind its socket object: both sides
 * reset, naming the cause (FOREIGN_WHY), rather than lose them silently. The
 * peer learns it from FOREIGN in either ring's flags at its next call; wake
 * it, and our own waiters, as a close would. */
static void mark_foreign(Channel *ch) {
    set_fault(ch, FOREIGN_WHY);
    if (ch->base == NULL || ch->closed)
        return;
    atomic_fetch_or_explicit(&ch->tx->flags, FOREIGN, memory_order_acq_rel);
    atomic_fetch_or_explicit(&ch->rx->flags, FOREIGN, memory_order_acq_rel);
    wake_parked(&ch->tx->consumer_waiting);
    ring_bell(ch->peer_w, &ch->tx->bells);
    wake_parked(&ch->rx->consumer_waiting);
    ring_bell(ch->own_w, &ch->rx->bells);
}

/* Foreign bytes found in w's queue: reset both sides (mark_foreign), then no
 * more writes into the r whose queue w is. A writer blocked in os.write or
 * os.sendfile on that fd wakes with EPIPE instead of waiting forever for room
 * nobody makes; the filler is over for a reset connection anyway. Bells
 * (w -> r) are not affected, and w's hang-up, which says that r was closed, is
 * not either: EPOLLHUP needs both directions shut. Then what waits is dropped. */
static void reject_foreign(Channel *ch, int w) {
    mark_foreign(ch);
    shutdown(w, SHUT_RD);
    drain_filler(w);
}

/* drain_filler, and a reset when it finds foreign bytes. */
static void drain_checked(Channel *ch, int w) {
    if (drain_filler(w))
        reject_foreign(ch, w);
}

/* FOREIGN in a ring's flags (the peer found bytes written behind a socket
 * object): our calls fail from now on, as after a reset. */
static int foreign_told(Channel *ch, uint32_t flags) {
    if (!(flags & FOREIGN))
        return 0;
    set_fault(ch, FOREIGN_WHY);
    return 1;
}

/* The peer's process is gone: our fileno turns readable for good (end of
 * stream, POLLRDHUP), as a TCP socket does when the kernel closes its peer. */
static void mark_dead(Channel *ch) {
    if (ch->peer_dead)
        return;
    ch->peer_dead = 1;
    if (ch->base != NULL && !ch->closed)
        wake_parked(&ch->rx->consumer_waiting); /* a thread parked in recv */
    if (ch->own_w >= 0) {
        shutdown(ch->own_w, SHUT_WR);
        drain_checked(ch, ch->own_w); /* writable again: a send now fails at once, as on TCP */
    }
}

/* Without waiting: has the peer's r been closed (its last close, or its death)? */
static void check_peer(Channel *ch) {
    if (ch->peer_dead || ch->peer_w < 0)
        return;
    struct pollfd probe = {ch->peer_w, 0, 0};
    if (poll(&probe, 1, 0) == 1 && (probe.revents & (POLLHUP | POLLERR)))
        mark_dead(ch);
}

/* check_peer, and whether our r holds bytes, in one syscall: what a recv that
 * found nothing needs to know (end of stream instead of EAGAIN; r to sweep). */
static int check_peer_and_r(Channel *ch) {
    struct pollfd probe[2] = {{ch->own_r, POLLIN, 0}, {ch->peer_w, 0, 0}};
    int watch_peer = !ch->peer_dead && ch->peer_w >= 0;
    if (poll(probe, watch_peer ? 2 : 1, 0) <= 0)
        return 0;
    if (watch_peer && (probe[1].revents & (POLLHUP | POLLERR)))
        mark_dead(ch);
    return (probe[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0;
}

/* Make our fileno unwritable: fill r's send buffer (r -> w). */
static void fill(Channel *ch) {
    static const char junk[4096];
    for (int i = 0; i < 64; i++) {
        if (send(ch->own_r, junk, sizeof junk, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
            return;
    }
}

/* A peer that died without closing owes us a reset, once, when TCP's
 * kernel would have sent one instead of a FIN: it left our bytes unread, or
 * never accepted us. */
static int take_dead_peer_reset(Channel *ch) {
    if (!ch->peer_dead || ch->dead_told)
        return 0;
    if (atomic_load_explicit(&ch->rx->flags, memory_order_acquire) & WR_SHUT)
        return 0; /* it closed first: its FIN (or RESET) said what it had to say */
    int64_t free = tx_free(ch);
    int accepted = ch->server ||
        atomic_load_explicit(&((shm_header *)ch->base)->server_attached, memory_order_acquire);
    if ((free >= 0 && (uint64_t)free < ch->tx_size) || !accepted) {
        ch->dead_told = 1;
        ch->sent_after_close = 1; /* after a reset every send fails with EPIPE */
        ch->reset_seen = 1;
        return 1;
    }
    return 0;
}

/* RESET on our rx ring (the peer closed with our bytes unread), taken by
 * whichever call looks first, as TCP's sk_err; it leaves end of stream. */
static int take_rx_reset(Channel *ch) {
    uint32_t was = atomic_fetch_and_explicit(&ch->rx->flags, ~RESET, memory_order_acq_rel);
    if (!(was & RESET))
        return 0;
    atomic_fetch_or_explicit(&ch->rx->flags, WR_SHUT, memory_order_acq_rel);
    ch->sent_after_close = 1; /* after a reset every send fails with EPIPE */
    ch->reset_seen = 1;
    return 1;
}

/* The reset a gone peer owes us, if any, taken once. */
static int take_peer_reset(Channel *ch) {
    return take_rx_reset(ch) || take_dead_peer_reset(ch);
}

static int rx_has_news(Channel *ch, int64_t avail) {
    uint32_t flags = atomic_load_explicit(&ch->rx->flags, memory_order_acquire);
    return avail != 0 || (flags & (WR_SHUT | RESET | FOREIGN)) || ch->peer_dead || ch->fault ||
           ch->rd_shut;
}

/* Leaving recv: make our readiness say what the ring holds (level-true).
 * sweep: r may hold bytes that are no bell of ours (the call found nothing
 * after a timeout, or a look at r found it readable): empty r even when no
 * bell is counted. Without sweep and with the token at 0, r is known empty:
 * nothing to drain. */
static void settle_readable(Channel *ch, int sweep) {
    atomic_store_explicit(&ch->rx->consumer_waiting, CW_OUTSIDE, memory_order_seq_cst);
    atomic_thread_fence(memory_order_seq_cst);
    int64_t avail = rx_avail(ch);
    if (rx_has_news(ch, avail)) {
        ring_bell(ch->own_w, &ch->rx->bells);
        return;
    }
    if (!sweep && atomic_load_explicit(&ch->rx->bells, memory_order_acquire) == 0)
        return;
    /* Empty r first, then give the token back, then look again: a ringer that
     * took the token before our store published first, so the look sees its
     * data; one that takes it after our store sends a byte we did not take. */
    drain_r(ch);
    atomic_store_explicit(&ch->rx->bells, 0, memory_order_seq_cst);
    atomic_thread_fence(memory_order_seq_cst);
    if (rx_has_news(ch, rx_avail(ch)))
        ring_bell(ch->own_w, &ch->rx->bells);
}

/* After consuming or raising our window: wake a producer parked for space. */
static void release_space(Channel *ch) {
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&ch->rx->producer_waiting, memory_order_acquire) &&
        atomic_exchange_explicit(&ch->rx->producer_waiting, 0, memory_order_acq_rel))
        drain_checked(ch, ch->peer_w);
}

/* After publishing: wake a consumer that may be parked or selecting. */
static void announce(Channel *ch) {
    atomic_thread_fence(memory_order_seq_cst);
    uint32_t waiting = atomic_load_explicit(&ch->tx->consumer_waiting, memory_order_acquire);
    if (waiting == CW_PARKED)
        waiting = wake_parked(&ch->tx->consumer_waiting);
    if (waiting == CW_OUTSIDE)
        ring_bell(ch->peer_w, &ch->tx->bells);
}

/* ---- giving drained pages back ----------------------------------------- */

/* Give the tx ring's pages back (MADV_REMOVE punches them out of the memfd)
 * when more than PUNCH_AFTER bytes went out since the last time and the
 * consumer has drained the ring, so an idle connection keeps no burst
 * resident (see the header: why no word to the consumer is needed). Called
 * with the tx locks held, only when idle (trim()): never per message, where
 * re-faulting the pages halved the throughput. Returns 1 if punched. */
static int give_pages_back(Channel *ch) {
    if (ch->st->tx_head - ch->st->tx_punched <= PUNCH_AFTER)
        return 0;
    if (atomic_load_explicit(&ch->tx->tail, memory_order_acquire) != ch->st->tx_head)
        return 0; /* bytes in flight (or a broken peer): nothing to give back now */
    PyThreadState *save = PyEval_SaveThread();
    int done = madvise(ch->tx_data, (size_t)ch->tx_size, MADV_REMOVE) == 0;
    PyEval_RestoreThread(save);
    ch->st->tx_punched = ch->st->tx_head; /* a failure keeps the pages, and we do not retry */
    return done;
}

/* ---- looking without a call ------------------------------------------- */

/* Readiness as the rings say it now, for ready() and the event loop's spin.
 * The mapping must be there (base != NULL: a caller that holds no direction
 * lock holds the rx_lock or the GIL, so close() cannot unmap). No lock is
 * needed otherwise (another process may be inside a call): look, never store,
 * and never judge the peer's positions (a call does that). */
static int look_readable(Channel *ch) {
    uint64_t head = atomic_load_explicit(&ch->rx->head, memory_order_acquire);
    uint32_t flags = atomic_load_explicit(&ch->rx->flags, memory_order_acquire);
    return ch->closed || head != ch->st->rx_tail || (flags & (WR_SHUT | RESET | FOREIGN)) ||
           ch->peer_dead || ch->fault || ch->rd_shut;
}

static int look_writable(Channel *ch) {
    uint64_t tail = atomic_load_explicit(&ch->tx->tail, memory_order_acquire);
    uint32_t tflags = atomic_load_explicit(&ch->tx->flags, memory_order_acquire);
    uint64_t window = atomic_load_explicit(&ch->tx->window, memory_order_acquire);
    if (window > ch->tx_size)
        window = ch->tx_size;
    return ch->closed || ch->st->tx_head - tail < window ||
           (tflags & (RD_SHUT | WR_SHUT | FOREIGN)) || ch->peer_dead || ch->fault;
}

/* ---- waiting ------------------------------------------------------------ */

typedef int (*ready_fn)(Channel *);

static int rx_ready(Channel *ch) {
    int64_t avail = rx_avail(ch);
    return ch->closed || rx_has_news(ch, avail);
}

static int tx_ready(Channel *ch) {
    int64_t free = tx_room(ch);
    uint32_t flags = atomic_load_explicit(&ch->tx->flags, memory_order_acquire);
    return ch->closed || free != 0 || (flags & (RD_SHUT | WR_SHUT | FOREIGN)) || ch->peer_dead ||
           ch->fault;
}

/* Wait until ready(ch) or the deadline (ns, -1 = none). Called with the GIL
 * held and the direction lock taken; returns 0 when ready, 1 on timeout, -1
 * with an exception set (a signal handler raised), 2 when a signal came while
 * the caller is *holding* bytes it must not lose (the handler runs later). */
static int wait_for(Channel *ch, ready_fn ready, int for_space, int64_t deadline,
                    int holding) {
    int64_t start = now_ns();
    int64_t budget = ch->spin_ns;
    /* A budget that shrank to nothing is probed now and then: the peer may be
     * answering fast again, and a parked wait alone cannot tell. */
    if (ch->adaptive && budget < 1000 && (++ch->probes & 15) == 0)
        budget = ch->spin_max_ns;
    int64_t spin_until = start + budget;
    if (deadline >= 0 && spin_until > deadline)
        spin_until = deadline;
    int got = 0, spun = 0;
    PyThreadState *save = PyEval_SaveThread();
    if (!for_space)
        atomic_store_explicit(&ch->rx->consumer_waiting, CW_SPINNING, memory_order_relaxed);
    for (unsigned i = 1; budget > 0; i++) {
        if (ready(ch)) {
            got = spun = 1;
            break;
        }
        cpu_relax();
        if ((i & 63) == 0 && now_ns() >= spin_until)
            break;
    }
    while (!got && !for_space) {
        /* Park on the futex word itself: one syscall to sleep, one for the
         * producer to wake us, and no bell to drain. The watcher (or close())
         * wakes us for a dead peer; the periodic check covers a process that
         * has no watcher (a forked child). */
        atomic_store_explicit(&ch->rx->consumer_waiting, CW_PARKED, memory_order_seq_cst);
        atomic_thread_fence(memory_order_seq_cst);
        if (ready(ch)) {
            got = 1;
            break;
        }
        int64_t nap = ch->liveness_ns;
        if (deadline >= 0) {
            int64_t left = deadline - now_ns();
            if (left <= 0)
                break;
            if (left < nap)
                nap = left;
        }
        if (futex_wait(&ch->rx->consumer_waiting, CW_PARKED, nap) < 0) {
            if (errno == EINTR) {
                PyEval_RestoreThread(save);
                if (holding)
                    return 2; /* the caller returns its bytes; the handler runs next */
                if (PyErr_CheckSignals() < 0)
                    return -1;
                save = PyEval_SaveThread();
            } else if (errno == ETIMEDOUT) {
                check_peer(ch);
                if (!holding) { /* a signal another thread took (no EINTR here) */
                    PyEval_RestoreThread(save);
                    if (PyErr_CheckSignals() < 0)
                        return -1;
                    save = PyEval_SaveThread();
                }
            }
        }
    }
    while (!got) { /* waiting for space: filler makes our fd unwritable, poll for POLLOUT */
        fill(ch);
        atomic_store_explicit(&ch->tx->producer_waiting, 1, memory_order_seq_cst);
        atomic_thread_fence(memory_order_seq_cst);
        if (ready(ch)) {
            if (atomic_exchange_explicit(&ch->tx->producer_waiting, 0, memory_order_acq_rel))
                drain_checked(ch, ch->own_w);
            got = 1;
            break;
        }
        int timeout_ms = -1;
        if (deadline >= 0) {
            int64_t left = deadline - now_ns();
            if (left <= 0)
                break;
            timeout_ms = (int)((left + 999999) / 1000000);
        }
        struct pollfd fds[2] = {
            {ch->own_r, POLLOUT, 0},
            {ch->peer_w, 0, 0}, /* POLLHUP: the peer's r is closed, its process gone */
        };
        int n = poll(fds, ch->peer_w >= 0 ? 2 : 1, timeout_ms);
        if (n < 0 && errno == EINTR) {
            if (holding) {
                /* The caller holds bytes it already took from the ring: it returns
                 * them, and the signal's handler runs right after (still pending). */
                PyEval_RestoreThread(save);
                return 2;
            }
            PyEval_RestoreThread(save);
            if (PyErr_CheckSignals() < 0)
                return -1;
            save = PyEval_SaveThread();
            continue;
        }
        if (n > 0 && (fds[1].revents & (POLLHUP | POLLERR)))
            mark_dead(ch);
    }
    PyEval_RestoreThread(save);
    if (ch->adaptive) {
        /* Adaptive spinning: a spin that paid grows the budget (up to the
         * ceiling); a wait that had to park shrinks it, so an idle peer costs
         * no CPU after a few waits. */
        if (spun) {
            int64_t grown = budget * 2 + 1000;
            ch->spin_ns = grown < ch->spin_max_ns ? grown : ch->spin_max_ns;
        } else {
            ch->spin_ns /= 2;
        }
    }
    return got ? 0 : 1;
}

/* The deadline of a call (-1 = none). A blocking socket (no Python
 * timeout) may still have SO_RCVTIMEO/SO_SNDTIMEO; *kernel says which. */
static int64_t deadline_for(Channel *ch, int64_t kernel_ns, int *kernel) {
    *kernel = ch->timeout_ns < 0 && kernel_ns > 0;
    if (*kernel)
        return now_ns() + kernel_ns;
    return ch->timeout_ns < 0 ? -1 : now_ns() + ch->timeout_ns;
}

/* Take a direction lock, waiting without the GIL if another thread has it. */
static int take(PyThread_type_lock lock) {
    if (PyThread_acquire_lock(lock, NOWAIT_LOCK))
        return 0;
    PyLockStatus st;
    Py_BEGIN_ALLOW_THREADS
    st = PyThread_acquire_lock_timed(lock, -1, 0);
    Py_END_ALLOW_THREADS
    return st == PY_LOCK_ACQUIRED ? 0 : -1;
}

/* Take a process-shared direction lock (the local one is held: one thread per
 * process gets here). Waits without the GIL in LIVENESS_NS steps, so close()
 * from another thread (EBADF) and signals (Ctrl-C) end the wait. A holder
 * that died (killed in the middle of a call) hands the lock on (robust mutex,
 * EOWNERDEAD): the positions it stored stay, the bytes it had copied out went
 * with it, as with a process killed right after read(2). Returns 0, or -1 with
 * an exception set. */
static int take_shared(Channel *ch, pthread_mutex_t *mu) {
    int rc = pthread_mutex_trylock(mu);
    while (rc == EBUSY) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += LIVENESS_NS;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec += 1;
            ts.tv_nsec -= 1000000000L;
        }
        Py_BEGIN_ALLOW_THREADS
        rc = pthread_mutex_clocklock(mu, CLOCK_MONOTONIC, &ts);
        Py_END_ALLOW_THREADS
        if (rc == ETIMEDOUT) {
            if (ch->closed) {
                raise_errno(EBADF, NULL);
                return -1;
            }
            if (PyErr_CheckSignals() < 0)
                return -1;
            rc = EBUSY;
        }
    }
    if (rc == EOWNERDEAD)
        rc = pthread_mutex_consistent(mu);
    if (rc != 0) {
        raise_errno(rc, NULL);
        return -1;
    }
    return 0;
}

/* Both locks of a direction, local first; 0, or -1 with an exception set. */
static int lock_dir(Channel *ch, PyThread_type_lock local, pthread_mutex_t *shared) {
    if (take(local) < 0) {
        raise_errno(EDEADLK, NULL);
        return -1;
    }
    if (take_shared(ch, shared) < 0) {
        PyThread_release_lock(local);
        return -1;
    }
    return 0;
}

static void unlock_dir(PyThread_type_lock local, pthread_mutex_t *shared) {
    pthread_mutex_unlock(shared);
    PyThread_release_lock(local);
}

/* Both rx locks without waiting (the local one first, as lock_dir); 1 when
 * taken. A busy lock means a call is in progress, and it settles our
 * readiness as it leaves. */
static int try_rx_locks(Channel *ch) {
    if (!PyThread_acquire_lock(ch->rx_lock, NOWAIT_LOCK))
        return 0;
    int rc = pthread_mutex_trylock(&ch->st->rx_mu);
    if (rc == EOWNERDEAD)
        rc = pthread_mutex_consistent(&ch->st->rx_mu);
    if (rc != 0) {
        PyThread_release_lock(ch->rx_lock);
        return 0;
    }
    return 1;
}

static void drop_rx_locks(Channel *ch) {
    unlock_dir(ch->rx_lock, &ch->st->rx_mu);
}

/* ---- receiving ---------------------------------------------------------- */

/* MSG_WAITALL with bytes in hand may wait for more only while more can come. */
static int may_wait_more(Channel *ch) {
    uint32_t flags = atomic_load_explicit(&ch->rx->flags, memory_order_acquire);
    return !(flags & (WR_SHUT | RESET | FOREIGN)) && !ch->peer_dead && !ch->rd_shut && !ch->closed;
}

/* Receive into dst (up to n bytes). Returns bytes copied, 0 for end of
 * stream, -1 with an exception set. */
#define RECV_FLAGS (MSG_PEEK | MSG_WAITALL | MSG_DONTWAIT | MSG_NOSIGNAL | MSG_CMSG_CLOEXEC)
#define SEND_FLAGS (MSG_DONTWAIT | MSG_NOSIGNAL | MSG_MORE | MSG_EOR)

static Py_ssize_t do_recv(Channel *ch, char *dst, Py_ssize_t n, int flags) {
    if (flags & ~RECV_FLAGS)
        return raise_errno(EOPNOTSUPP, "only MSG_PEEK, MSG_WAITALL and MSG_DONTWAIT are carried "
                                       "by the fast path's rings"), -1;
    int peek = flags & MSG_PEEK, waitall = (flags & MSG_WAITALL) && !peek;
    int nowait = (flags & MSG_DONTWAIT) || ch->timeout_ns == 0, kernel;
    int64_t deadline = deadline_for(ch, ch->rcvtimeo_ns, &kernel);
    Py_ssize_t done = 0;
    int sweep = 0; /* r may hold bytes that are no bell (see settle_readable) */
    if (ch->closed)
        return raise_errno(EBADF, NULL), -1;
    if (lock_dir(ch, ch->rx_lock, &ch->st->rx_mu) < 0)
        return -1;
    Py_ssize_t result = -1;
    for (;;) {
        if (ch->closed) { /* another thread closed the socket while we waited */
            raise_errno(EBADF, NULL);
            break;
        }
        if (ch->fault) { /* a reset for corruption sticks, whatever the peer writes next */
            if (done > 0) {
                result = done;
                break;
            }
            raise_errno(ch->fault, ch->fault_why);
            break;
        }
        int64_t avail = rx_avail(ch);
        if (avail > 0) {
            size_t take_n = (size_t)(n - done) < (uint64_t)avail ? (size_t)(n - done) : (size_t)avail;
            copy_out(ch, dst + done, ch->st->rx_tail, take_n);
            if (!peek) {
                ch->st->rx_tail += take_n;
                atomic_store_explicit(&ch->rx->tail, ch->st->rx_tail, memory_order_release);
                ch->bytes_in += take_n;
                release_space(ch);
            }
            done += (Py_ssize_t)take_n;
            if (!waitall || done == n) {
                result = done;
                break;
            }
            continue;
        }
        if (avail < 0 || ch->fault || done > 0) {
            /* Bytes already taken are returned; an error waits for the next call. */
            if (done > 0 && (!waitall || avail < 0 || ch->fault || !may_wait_more(ch))) {
                result = done;
                break;
            }
            if (avail < 0 || ch->fault) {
                raise_errno(ch->fault, ch->fault_why);
                break;
            }
        }
        uint32_t rflags = atomic_load_explicit(&ch->rx->flags, memory_order_acquire);
        if (foreign_told(ch, rflags)) {
            raise_errno(ch->fault, ch->fault_why);
            break;
        }
        if ((rflags & RESET) && take_rx_reset(ch)) {
            raise_errno(ECONNRESET, NULL);
            break;
        }
        if ((rflags & WR_SHUT) || ch->rd_shut || n == 0) {
            result = done; /* end of stream (or recv(0)) */
            break;
        }
        if (ch->peer_dead) {
            if (take_dead_peer_reset(ch)) {
                raise_errno(ECONNRESET, NULL);
                break;
            }
            result = done; /* as TCP after the FIN the kernel sends for a dead process */
            break;
        }
        if (ch->closed) {
            raise_errno(EBADF, NULL);
            break;
        }
        if (nowait) {
            if (done > 0) {
                result = done;
                break;
            }
            /* One look (poll) at both: the peer's last close may be news (end of
             * stream, not EAGAIN), and r is swept only when it holds bytes. */
            sweep = check_peer_and_r(ch);
            if (ch->peer_dead)
                continue;
            raise_errno(EAGAIN, NULL);
            break;
        }
        int w = wait_for(ch, rx_ready, 0, deadline, done > 0);
        if (w < 0)
            break;
        if (w > 0) {
            if (done > 0) {
                result = done;
                break;
            }
            sweep = 1;
            if (kernel)
                raise_errno(EAGAIN, NULL); /* SO_RCVTIMEO, as the kernel reports it */
            else
                raise_timeout();
            break;
        }
    }
    settle_readable(ch, sweep);
    unlock_dir(ch->rx_lock, &ch->st->rx_mu);
    return result;
}

/* ---- sending ------------------------------------------------------------ */

/* Send from src. all: wait until everything is in the ring. Returns bytes
 * sent or -1 with an exception set. */
static Py_ssize_t do_send(Channel *ch, const char *src, Py_ssize_t n, int flags, int all) {
    if (flags & ~SEND_FLAGS)
        return raise_errno(EOPNOTSUPP, "urgent data (MSG_OOB) and routing flags are not carried "
                                       "by the fast path's rings"), -1;
    int nowait = (flags & MSG_DONTWAIT) || ch->timeout_ns == 0, kernel;
    int64_t deadline = deadline_for(ch, ch->sndtimeo_ns, &kernel);
    Py_ssize_t done = 0, result = -1;
    if (ch->closed)
        return raise_errno(EBADF, NULL), -1;
    if (lock_dir(ch, ch->tx_lock, &ch->st->tx_mu) < 0)
        return -1;
    for (;;) {
        uint32_t tflags = atomic_load_explicit(&ch->tx->flags, memory_order_acquire);
        if (ch->closed) { /* another thread closed the socket while we waited */
            raise_errno(EBADF, NULL);
            break;
        }
        if (ch->fault || foreign_told(ch, tflags)) {
            raise_errno(ch->fault, ch->fault_why);
            break;
        }
        if (done == n && (done > 0 || !(tflags & WR_SHUT))) {
            result = done; /* all of it is in the ring: whatever the peer does next */
            break;
        }
        if (tflags & WR_SHUT) {
            raise_errno(EPIPE, NULL);
            break;
        }
        if ((tflags & RD_SHUT) || ch->peer_dead) {
            /* As Linux TCP: a peer that left our bytes unread reset the
             * connection, and the first call to look reports it; otherwise it
             * sent a FIN, so the first send is taken (TCP's peer answers it
             * with a reset, which makes every later send fail with EPIPE). */
            if (done || take_peer_reset(ch)) {
                raise_errno(ECONNRESET, NULL);
                break;
            }
            if (!ch->sent_after_close) {
                ch->sent_after_close = 1;
                result = n;
                break;
            }
            raise_errno(EPIPE, NULL);
            break;
        }
        int64_t free = tx_room(ch);
        if (free < 0) {
            raise_errno(ch->fault, ch->fault_why);
            break;
        }
        if (free > 0) {
            size_t put = (size_t)(n - done) < (uint64_t)free ? (size_t)(n - done) : (size_t)free;
            copy_in(ch, src + done, put);
            ch->st->tx_head += put;
            atomic_store_explicit(&ch->tx->head, ch->st->tx_head, memory_order_release);
            ch->bytes_out += put;
            announce(ch);
            done += (Py_ssize_t)put;
            if (!all && (nowait || ch->timeout_ns > 0)) {
                result = done; /* a partial send, as TCP gives in these modes */
                break;
            }
            continue;
        }
        if (nowait) {
            if (done > 0 && !all) {
                result = done;
                break;
            }
            /* Unwritable until the consumer frees space, for select's sake. */
            fill(ch);
            atomic_store_explicit(&ch->tx->producer_waiting, 1, memory_order_seq_cst);
            atomic_thread_fence(memory_order_seq_cst);
            if (tx_room(ch) != 0) {
                if (atomic_exchange_explicit(&ch->tx->producer_waiting, 0, memory_order_acq_rel))
                    drain_checked(ch, ch->own_w);
                continue;
            }
            check_peer(ch); /* a peer that is gone gets EPIPE, not EAGAIN */
            if (ch->peer_dead)
                continue;
            raise_errno(EAGAIN, NULL);
            break;
        }
        int w = wait_for(ch, tx_ready, 1, deadline, 0);
        if (w < 0)
            break;
        if (w > 0) {
            if (done > 0 && !all) {
                result = done;
                break;
            }
            if (kernel)
                raise_errno(EAGAIN, NULL); /* SO_SNDTIMEO, as the kernel reports it */
            else
                raise_timeout();
            break;
        }
    }
    unlock_dir(ch->tx_lock, &ch->st->tx_mu);
    return result;
}

/* ---- the Python type ---------------------------------------------------- */

static int parse_timeout(PyObject *obj, int64_t *out) {
    if (obj == Py_None) {
        *out = -1;
        return 0;
    }
    double t = PyFloat_AsDouble(obj);
    if (t == -1.0 && PyErr_Occurred())
        return -1;
    if (t < 0) {
        PyErr_SetString(PyExc_ValueError, "Timeout value out of range");
        return -1;
    }
    *out = t > 9e9 ? INT64_MAX / 4 : (int64_t)(t * 1e9);
    return 0;
}

static int check_fd_is_stream(int fd) {
    int type = 0, domain = 0;
    socklen_t len = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
        return -1;
    len = sizeof domain;
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0)
        return -1;
    if (type != SOCK_STREAM || domain != AF_UNIX) {
        errno = EINVAL;
        return -1;
    }
    return 0;
}

/* 0 when both ring sizes are powers of two in [MIN_RING, MAX_RING]; else -1
 * with OSError(EINVAL) set. */
static int check_ring_sizes(unsigned long long c2s, unsigned long long s2c) {
    for (int i = 0; i < 2; i++) {
        unsigned long long size = i ? s2c : c2s;
        if (size < MIN_RING || size > MAX_RING || (size & (size - 1))) {
            raise_errno(EINVAL, "ring sizes must be powers of two between 4 KiB and 64 MiB");
            return -1;
        }
    }
    return 0;
}

/* 0 when memfd is sealed against shrink and grow and is len bytes long; else
 * -1 with OSError(EINVAL) set. trusted: this process made it so (no syscall). */
static int check_memfd(int memfd, size_t len, int trusted) {
    if (trusted)
        return 0;
    int seals = fcntl(memfd, F_GET_SEALS);
    if (seals < 0 || (seals & REQUIRED_SEALS) != REQUIRED_SEALS) {
        raise_errno(EINVAL, "the shared memory is not a sealed memfd");
        return -1;
    }
    struct stat st;
    if (fstat(memfd, &st) < 0 || (size_t)st.st_size != len) {
        raise_errno(EINVAL, "the shared memory has the wrong size");
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(Channel_doc,
"Channel(memfd, c2s_size, s2c_size, server, own_r, own_w, peer_w, trusted=False, slot=0, /)\n"
"--\n\n"
"One end of a ring-carried connection: maps the sealed memfd (the fd is not\n"
"kept), or, given an Arena instead, uses its slot `slot` (see Arena); and\n"
"uses the three socket fds, which the caller owns and keeps open until\n"
"close(). Raises OSError(EINVAL) when the memfd is not sealed, has the wrong\n"
"size, a size is not a power of two in [4096, 64 MiB], or the arena's sizes\n"
"differ or its slot is out of range or in use. trusted: this process made\n"
"every fd (create_memfd with these sizes, socketpair), so those checks are\n"
"skipped.");

static int init_side_state(side_state *st) {
    pthread_mutexattr_t attr;
    if (pthread_mutexattr_init(&attr) != 0)
        return -1;
    int rc = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    if (rc == 0)
        rc = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    if (rc == 0)
        rc = pthread_mutex_init(&st->rx_mu, &attr);
    if (rc == 0)
        rc = pthread_mutex_init(&st->tx_mu, &attr);
    pthread_mutexattr_destroy(&attr);
    return rc;
}

static int Channel_init(Channel *self, PyObject *args, PyObject *kwds) {
    PyObject *shared;
    int server, own_r, own_w, peer_w, trusted = 0;
    unsigned int slot = 0;
    unsigned long long c2s, s2c;
    if (!PyArg_ParseTuple(args, "OKKpiii|pI:Channel", &shared, &c2s, &s2c, &server, &own_r,
                          &own_w, &peer_w, &trusted, &slot))
        return -1;
    if (self->base != NULL || self->arena != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Channel is already initialised");
        return -1;
    }
    Arena *arena = PyObject_TypeCheck(shared, ArenaType) ? (Arena *)shared : NULL;
    int memfd = -1;
    if (arena == NULL) {
        long fd = PyLong_AsLong(shared);
        if (fd == -1 && PyErr_Occurred())
            return -1;
        if (fd < INT_MIN || fd > INT_MAX || slot != 0) { /* a bad fd: not a sealed memfd */
            raise_errno(EINVAL, "Channel takes a memfd (slot 0) or an Arena and a slot");
            return -1;
        }
        memfd = (int)fd;
    }
    if (check_ring_sizes(c2s, s2c) < 0)
        return -1;
    size_t len = HEADER_SIZE + (size_t)c2s + (size_t)s2c;
    if (arena != NULL) {
        /* The arena was checked when it was mapped; a slot is one connection's
         * in this process (a client that names one twice is refused). trusted:
         * our own arena, whose slot we claimed. */
        if (arena->base == NULL || arena->c2s != c2s || arena->s2c != s2c) {
            raise_errno(EINVAL, "the arena holds rings of other sizes");
            return -1;
        }
        uint64_t bit = slot < arena->slots ? 1ULL << slot : 0;
        if (bit == 0 || (arena->used & bit) || (trusted && !(arena->claimed & bit))) {
            raise_errno(EINVAL, "the arena slot named is out of range or in use");
            return -1;
        }
    } else if (check_memfd(memfd, len, trusted) < 0) {
        /* trusted: every fd was made by this process (create_memfd, socketpair)
         * for these sizes, as the client's are; a server checks what it was sent. */
        return -1;
    }
    if (!trusted && (check_fd_is_stream(own_r) < 0 || check_fd_is_stream(own_w) < 0 ||
                     (peer_w >= 0 && check_fd_is_stream(peer_w) < 0))) {
        raise_errno(EINVAL, "the wake-up fds must be AF_UNIX stream sockets");
        return -1;
    }
    /* r's send buffer only ever holds filler that makes r unwritable: the
     * smaller, the fewer bytes that takes. */
    int one = 1;
    if (setsockopt(own_r, SOL_SOCKET, SO_SNDBUF, &one, sizeof one) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    void *base = arena != NULL ? arena->base + (size_t)slot * arena->slot_len
                               : mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
    if (base == MAP_FAILED) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    side_state *page = slot_alloc();
    if (page == NULL) {
        PyErr_SetFromErrno(PyExc_OSError);
        if (arena == NULL)
            munmap(base, len);
        return -1;
    }
    self->rx_lock = PyThread_allocate_lock();
    self->tx_lock = PyThread_allocate_lock();
    if (!self->rx_lock || !self->tx_lock || init_side_state(page) != 0) {
        slot_free(page);
        if (arena == NULL)
            munmap(base, len);
        PyErr_NoMemory();
        return -1;
    }
    self->st = page;
    shm_header *h = (shm_header *)base;
    self->base = base;
    self->map_len = len;
    if (arena != NULL) {
        arena->claimed &= ~(1ULL << slot);
        arena->used |= 1ULL << slot;
        self->arena = (Arena *)Py_NewRef(arena);
        self->slot = slot;
        self->generation = atomic_load_explicit(&h->generation, memory_order_acquire);
    }
    char *d0 = (char *)base + HEADER_SIZE, *d1 = d0 + c2s;
    self->tx = &h->ring[server ? 1 : 0];
    self->rx = &h->ring[server ? 0 : 1];
    self->tx_data = server ? d1 : d0;
    self->rx_data = server ? d0 : d1;
    self->tx_size = server ? s2c : c2s;
    self->rx_size = server ? c2s : s2c;
    /* Positions start where the peer's are now (the client may have sent
     * already); validated like any other read. */
    self->st->rx_tail = atomic_load_explicit(&self->rx->tail, memory_order_acquire);
    self->st->tx_head = atomic_load_explicit(&self->tx->head, memory_order_acquire);
    self->st->rx_head_seen = self->st->rx_tail;
    self->st->tx_punched = self->st->tx_head;
    self->st->tx_tail_seen = atomic_load_explicit(&self->tx->tail, memory_order_acquire);
    if (self->st->rx_tail != 0 || self->st->tx_tail_seen > self->st->tx_head ||
        self->st->tx_head - self->st->tx_tail_seen > self->tx_size)
        set_fault(self, "the shared ring was not fresh at the handshake; connection reset");
    self->own_r = own_r;
    self->own_w = own_w;
    self->peer_w = peer_w;
    self->server = server;
    if (server)
        atomic_store_explicit(&h->server_attached, 1, memory_order_release);
    self->timeout_ns = -1;
    self->spin_max_ns = 50000;
    self->spin_ns = self->spin_max_ns;
    self->adaptive = 1;
    self->liveness_ns = LIVENESS_NS;
    return 0;
}

/* Give a finished slot's ring pages back but each ring's first (a request and
 * its answer fit there, and stay mapped on both sides for the next connection):
 * an arena's free slots would otherwise keep every page a connection touched. */
static void punch_slot(Channel *self) {
    ring_ctl *rings[2] = {self->tx, self->rx};
    char *data[2] = {self->tx_data, self->rx_data};
    uint64_t sizes[2] = {self->tx_size, self->rx_size};
    for (int i = 0; i < 2; i++) {
        uint64_t passed = atomic_load_explicit(&rings[i]->head, memory_order_acquire);
        if (passed > 4096 && sizes[i] > 4096)
            madvise(data[i] + 4096, (size_t)sizes[i] - 4096, MADV_REMOVE);
    }
}

/* An arena slot's last user on each side says so, and the client claims it
 * again only once the server's is over (Arena.claim): the server stores
 * server_gone after its last close (r closed everywhere: no dup and no fork()ed
 * holder of ours can touch the slot again); a client whose server never
 * attached and never will (its r is gone) stores it for it. A side whose r
 * lives on elsewhere, or that never closed (dealloc), leaves the slot to them:
 * the client never claims it again. Whichever side leaves second gives the
 * pages back (punch_slot): each stores that it left, fences, and looks at the
 * other's word (Dekker: one of them sees the other's); the server stores
 * server_gone only after its punch, so a slot is never claimed under one. */
static void leave_slot(Channel *self) {
    Arena *arena = self->arena;
    shm_header *h = (shm_header *)self->base;
    uint64_t bit = 1ULL << self->slot;
    int done = self->r_gone && self->closed;
    if (self->server) {
        if (done) {
            atomic_store_explicit(&h->server_left, 1, memory_order_seq_cst);
            atomic_thread_fence(memory_order_seq_cst);
            if (atomic_load_explicit(&h->client_gone, memory_order_seq_cst))
                punch_slot(self);
            atomic_store_explicit(&h->server_gone, 1, memory_order_release);
        }
    } else if (!done) {
        arena->lost |= bit;
    } else {
        atomic_store_explicit(&h->client_gone, 1, memory_order_seq_cst);
        atomic_thread_fence(memory_order_seq_cst);
        if (atomic_load_explicit(&h->server_left, memory_order_seq_cst))
            punch_slot(self);
        if (!atomic_load_explicit(&h->server_attached, memory_order_acquire)) {
            check_peer(self);
            if (self->peer_dead) /* it never attached, and never will */
                atomic_store_explicit(&h->server_gone, 1, memory_order_release);
        }
    }
    arena->used &= ~bit;
    self->base = NULL;
    self->arena = NULL;
    Py_DECREF(arena); /* the arena's mapping goes with its last user */
}

/* Let go of the rings: our own mapping, or our slot of an arena. */
static void unmap(Channel *self) {
    if (self->base == NULL)
        return;
    if (self->arena != NULL) {
        leave_slot(self);
        return;
    }
    munmap(self->base, self->map_len);
    self->base = NULL;
}

static void Channel_dealloc(Channel *self) {
    if (self->weakrefs != NULL)
        PyObject_ClearWeakRefs((PyObject *)self);
    unmap(self);
    if (self->st != NULL) /* other processes may hold the locks: they are never destroyed */
        slot_free(self->st);
    if (self->rx_lock)
        PyThread_free_lock(self->rx_lock);
    if (self->tx_lock)
        PyThread_free_lock(self->tx_lock);
    PyTypeObject *tp = Py_TYPE(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp); /* instances of a heap type hold a reference to it */
}

static int usable(Channel *self) {
    if (self->base == NULL || self->closed) {
        raise_errno(EBADF, NULL);
        return 0;
    }
    /* A holder whose fd was closed behind its back (os.close in a fork()ed
     * child) while its last close elsewhere freed the slot: the slot may carry
     * another connection now, which it must not touch. */
    if (self->arena != NULL &&
        atomic_load_explicit(&((shm_header *)self->base)->generation, memory_order_acquire) !=
            self->generation) {
        raise_errno(ECONNRESET, "this connection's rings were handed to another one: its fd "
                                "was closed everywhere while this socket object lived on");
        return 0;
    }
    return 1;
}

/* Argument parsing for the data methods, METH_FASTCALL style: they sit on
 * every message's path, where building and parsing an args tuple showed. The
 * rules and messages are those of socket.socket's own methods. */

static int check_nargs(const char *name, Py_ssize_t nargs, Py_ssize_t min, Py_ssize_t max) {
    if (nargs < min) {
        PyErr_Format(PyExc_TypeError, "%s() takes at least %zd argument%s (%zd given)", name, min,
                     min == 1 ? "" : "s", nargs);
        return -1;
    }
    if (nargs > max) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %zd arguments (%zd given)", name, max,
                     nargs);
        return -1;
    }
    return 0;
}

static int int_arg(PyObject *obj, int *out) {
    PyObject *index = PyNumber_Index(obj);
    if (index == NULL)
        return -1;
    long value = PyLong_AsLong(index);
    Py_DECREF(index);
    if (value == -1 && PyErr_Occurred())
        return -1;
    if (value > INT_MAX || value < INT_MIN) {
        PyErr_SetString(PyExc_OverflowError, value > 0 ? "signed integer is greater than maximum"
                                                       : "signed integer is less than minimum");
        return -1;
    }
    *out = (int)value;
    return 0;
}

static int size_arg(PyObject *obj, Py_ssize_t *out) {
    Py_ssize_t value = PyNumber_AsSsize_t(obj, PyExc_OverflowError);
    if (value == -1 && PyErr_Occurred())
        return -1;
    *out = value;
    return 0;
}

static int buffer_arg(const char *name, PyObject *obj, Py_buffer *view, int writable) {
    if (PyObject_GetBuffer(obj, view, writable ? PyBUF_WRITABLE : PyBUF_SIMPLE) == 0)
        return 0;
    if (writable) {
        PyErr_Clear(); /* socket.recv_into's own words for any buffer it cannot write */
        PyErr_Format(PyExc_TypeError, "%s() argument 1 must be read-write bytes-like object, "
                     "not %.50s", name, Py_TYPE(obj)->tp_name);
    }
    return -1;
}

/* The size of recv's bytes object: what the ring holds now when that is less
 * than n (an event loop asks for 256 KiB and gets one small message: a buffer
 * that size would be mmapped, faulted and unmapped around every message), else
 * n (nothing yet: a wait may bring up to n). A look without the rx lock, so
 * only a hint: recv copies at most the size it is given, and a head the peer
 * corrupted is judged by the recv itself. */
static Py_ssize_t recv_size_hint(Channel *ch, Py_ssize_t n) {
    uint64_t head = atomic_load_explicit(&ch->rx->head, memory_order_acquire);
    uint64_t avail = head - ch->st->rx_tail;
    return avail == 0 || avail >= (uint64_t)n ? n : (Py_ssize_t)avail;
}

static PyObject *recv_impl(Channel *self, PyObject *const *args, Py_ssize_t nargs) {
    Py_ssize_t n;
    int flags = 0;
    if (check_nargs("recv", nargs, 1, 2) < 0 || size_arg(args[0], &n) < 0 ||
        (nargs > 1 && int_arg(args[1], &flags) < 0))
        return NULL;
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "negative buffersize in recv");
        return NULL;
    }
    if (!usable(self))
        return NULL;
    if (!(flags & MSG_WAITALL))
        n = recv_size_hint(self, n);
    PyObject *buf = PyBytes_FromStringAndSize(NULL, n);
    if (buf == NULL)
        return NULL;
    Py_ssize_t got = do_recv(self, PyBytes_AS_STRING(buf), n, flags);
    if (got < 0) {
        Py_DECREF(buf);
        return NULL;
    }
    if (got != n && _PyBytes_Resize(&buf, got) < 0)
        return NULL;
    return buf;
}

static PyObject *recv_into_impl(Channel *self, PyObject *const *args, Py_ssize_t nargs) {
    Py_buffer view;
    Py_ssize_t n = 0;
    int flags = 0;
    if (check_nargs("recv_into", nargs, 1, 3) < 0 ||
        (nargs > 1 && size_arg(args[1], &n) < 0) ||
        (nargs > 2 && int_arg(args[2], &flags) < 0) ||
        buffer_arg("recv_into", args[0], &view, 1) < 0)
        return NULL;
    if (n < 0 || n > view.len) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, n < 0 ? "negative buffersize in recv_into"
                                                : "buffer too small for requested bytes");
        return NULL;
    }
    if (n == 0)
        n = view.len;
    Py_ssize_t got = usable(self) ? do_recv(self, view.buf, n, flags) : -1;
    PyBuffer_Release(&view);
    return got < 0 ? NULL : PyLong_FromSsize_t(got);
}

static PyObject *send_impl(Channel *self, PyObject *const *args, Py_ssize_t nargs, int all) {
    const char *name = all ? "sendall" : "send";
    Py_buffer view;
    int flags = 0;
    if (check_nargs(name, nargs, 1, 2) < 0 || (nargs > 1 && int_arg(args[1], &flags) < 0) ||
        buffer_arg(name, args[0], &view, 0) < 0)
        return NULL;
    Py_ssize_t sent = usable(self) ? do_send(self, view.buf, view.len, flags, all) : -1;
    PyBuffer_Release(&view);
    if (sent < 0)
        return NULL;
    if (all)
        Py_RETURN_NONE;
    return PyLong_FromSsize_t(sent);
}

static PyObject *Channel_recv(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    return recv_impl((Channel *)self, args, nargs);
}
static PyObject *Channel_recv_into(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    return recv_into_impl((Channel *)self, args, nargs);
}
static PyObject *Channel_send(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    return send_impl((Channel *)self, args, nargs, 0);
}
static PyObject *Channel_sendall(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    return send_impl((Channel *)self, args, nargs, 1);
}

static PyObject *Channel_shutdown(Channel *self, PyObject *arg) {
    long how = PyLong_AsLong(arg);
    if (how == -1 && PyErr_Occurred())
        return NULL;
    if (how != SHUT_RD && how != SHUT_WR && how != SHUT_RDWR)
        return raise_errno(EINVAL, NULL);
    if (!usable(self))
        return NULL;
    if (how != SHUT_RD) {
        atomic_fetch_or_explicit(&self->tx->flags, WR_SHUT, memory_order_acq_rel);
        atomic_thread_fence(memory_order_seq_cst);
        announce(self); /* a peer parked in recv wakes to read the end */
        /* The peer's fileno reads end of stream for good (POLLIN|POLLRDHUP, as
         * TCP after a FIN); it needs no bell any more. Nothing shuts an r: a
         * hang-up of the peer's copy of our w must mean our r is closed. */
        shutdown(self->peer_w, SHUT_WR);
        drain_checked(self, self->own_w); /* writable, as TCP after SHUT_WR: a send fails at once */
    }
    if (how != SHUT_WR) {
        /* Readable for good, as TCP after SHUT_RD; the peer may go on sending. */
        self->rd_shut = 1;
        ring_bell(self->own_w, &self->rx->bells);
        wake_parked(&self->rx->consumer_waiting); /* our own thread parked in recv */
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(hang_up_doc,
"hang_up($self, /)\n--\n\n"
"Call after closing our r's fd, before close(). If that closed r's last copy\n"
"anywhere (our w reports POLLHUP: no dup and no fork()ed child holds r), tell\n"
"the peer in the header, as TCP's last close sends a FIN, or a reset when we\n"
"leave its data unread or SO_LINGER (1, 0) asked for an abortive close\n"
"(abortive): WR_SHUT (and RESET) on our tx ring, RD_SHUT on our rx\n"
"ring; then ring its bell, wake its parked recv and drain its filler, so its\n"
"select, recv and send learn it with no thread of ours and no syscall of\n"
"theirs. Returns True if it told. A process that dies never calls it: its\n"
"peer learns of the death from the hang-up of its copy of our w, as before.");

static PyObject *Channel_hang_up(Channel *self, PyObject *Py_UNUSED(ignored)) {
    if (self->base == NULL || self->closed || self->own_w < 0)
        Py_RETURN_FALSE;
    struct pollfd probe = {self->own_w, POLLIN, 0};
    if (poll(&probe, 1, 0) != 1 || !(probe.revents & POLLHUP))
        Py_RETURN_FALSE; /* r lives on elsewhere: its last close tells */
    self->r_gone = 1;
    self->w_queued = (probe.revents & POLLIN) != 0;
    /* No other holder is left to race with: no lock needed. */
    int64_t unread = rx_avail(self);
    uint32_t told = WR_SHUT | (unread != 0 || self->abortive ? RESET : 0);
    atomic_fetch_or_explicit(&self->tx->flags, told, memory_order_acq_rel);
    atomic_fetch_or_explicit(&self->rx->flags, RD_SHUT, memory_order_acq_rel);
    atomic_thread_fence(memory_order_seq_cst);
    wake_parked(&self->tx->consumer_waiting);
    /* A peer that hung up first (RD_SHUT on our tx ring: its r is closed
     * everywhere) has no fd left to ring and nothing waiting for room. */
    if (atomic_load_explicit(&self->tx->flags, memory_order_acquire) & RD_SHUT)
        Py_RETURN_TRUE;
    ring_bell(self->peer_w, &self->tx->bells);
    drain_checked(self, self->peer_w); /* a peer waiting for room fails at once */
    Py_RETURN_TRUE;
}

PyDoc_STRVAR(close_doc,
"close($self, /)\n--\n\n"
"Let go of the rings: wakes our own threads that wait, then unmaps.\n"
"Idempotent. The connection ends when the last copy of our r (the\n"
"application's fd; dup() and fork() make copies) is closed: the kernel then\n"
"hangs up the peer's copy of our w, and the peer reads end of stream\n"
"(ECONNRESET if we left its data unread), as TCP's last close sends a FIN\n"
"(or a reset).");

static PyObject *Channel_close(Channel *self, PyObject *Py_UNUSED(ignored)) {
    if (self->base == NULL || self->closed)
        Py_RETURN_NONE;
    if (!self->r_gone || self->w_queued)
        drain_checked(self, self->own_w); /* our program's bytes on our fd: the peer must hear */
    self->closed = 1;
    /* Wake our own waiters: parked in recv, selecting, or waiting for space.
     * With our r closed everywhere (hang_up saw it) nobody can select on it
     * or wait for its room: only a parked recv is left to wake. */
    wake_parked(&self->rx->consumer_waiting);
    if (!self->r_gone) {
        ring_bell(self->own_w, &self->rx->bells);
        drain_filler(self->own_w);
    }
    if (take(self->rx_lock) < 0 || take(self->tx_lock) < 0)
        return raise_errno(EDEADLK, NULL);
    unmap(self);
    PyThread_release_lock(self->tx_lock);
    PyThread_release_lock(self->rx_lock);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(ready_doc,
"ready($self, /)\n--\n\n"
"(readable, writable, peer_closed) as the rings say now, without a syscall.");

static PyObject *Channel_ready(Channel *self, PyObject *Py_UNUSED(ignored)) {
    if (self->base == NULL)
        return Py_BuildValue("(OOO)", Py_True, Py_True, Py_True);
    uint32_t flags = atomic_load_explicit(&self->rx->flags, memory_order_acquire);
    int eof = (flags & (WR_SHUT | RESET | FOREIGN)) || self->peer_dead;
    return Py_BuildValue("(OOO)", look_readable(self) ? Py_True : Py_False,
                         look_writable(self) ? Py_True : Py_False, eof ? Py_True : Py_False);
}

PyDoc_STRVAR(stats_doc,
"stats($self, /)\n--\n\n"
"A dict: bytes_in, bytes_out, rx_fill, tx_fill, rx_size, tx_size.");

static PyObject *Channel_stats(Channel *self, PyObject *Py_UNUSED(ignored)) {
    long long rx_fill = 0, tx_fill = 0;
    if (self->base != NULL) {
        rx_fill = (long long)(atomic_load(&self->rx->head) - self->st->rx_tail);
        tx_fill = (long long)(self->st->tx_head - atomic_load(&self->tx->tail));
    }
    return Py_BuildValue("{sKsKsLsLsKsK}", "bytes_in", (unsigned long long)self->bytes_in,
                         "bytes_out", (unsigned long long)self->bytes_out, "rx_fill", rx_fill,
                         "tx_fill", tx_fill, "rx_size", (unsigned long long)self->rx_size,
                         "tx_size", (unsigned long long)self->tx_size);
}

PyDoc_STRVAR(trim_doc,
"trim($self, /)\n--\n\n"
"Give the send ring's pages back to the kernel if the peer has drained it\n"
"and more than 64 KiB went through it since the last time; never waits (a\n"
"call in progress keeps them). True if pages were given back. The\n"
"background thread calls it for idle connections.");

static PyObject *Channel_trim(Channel *self, PyObject *Py_UNUSED(ignored)) {
    int done = 0;
    if (self->base != NULL && !self->closed && self->st->tx_head - self->st->tx_punched > PUNCH_AFTER &&
        PyThread_acquire_lock(self->tx_lock, NOWAIT_LOCK)) {
        int rc = pthread_mutex_trylock(&self->st->tx_mu);
        if (rc == EOWNERDEAD)
            rc = pthread_mutex_consistent(&self->st->tx_mu);
        if (rc == 0) {
            if (self->base != NULL && !self->closed)
                done = give_pages_back(self);
            pthread_mutex_unlock(&self->st->tx_mu);
        }
        PyThread_release_lock(self->tx_lock);
    }
    return PyBool_FromLong(done);
}

PyDoc_STRVAR(inspect_wakeups_doc,
"inspect_wakeups($self, /)\n--\n\n"
"Look (without taking) at what waits in both w sockets we hold (ours: what our\n"
"fd was given; our copy of the peer's: what the peer's fd was given): filler\n"
"is NUL bytes; anything else was written to an fd by its program, and resets\n"
"the connection on both sides (then that queue is drained and refused, and\n"
"True returned). The background thread calls it when one turns readable.");

static PyObject *Channel_inspect_wakeups(Channel *self, PyObject *Py_UNUSED(ignored)) {
    /* The GIL is held throughout, so close() cannot unmap under us, and one
     * buffer serves every caller. */
    static char seen[65536];
    if (self->base == NULL || self->closed)
        Py_RETURN_FALSE;
    int told = 0;
    int ws[2] = {self->peer_w, self->own_w};
    for (int i = 0; i < 2; i++) {
        if (ws[i] < 0)
            continue;
        ssize_t got = recv(ws[i], seen, sizeof seen, MSG_DONTWAIT | MSG_PEEK);
        if (!not_filler(seen, got))
            continue;
        reject_foreign(self, ws[i]); /* a writer blocked on that fd fails (EPIPE), and is told */
        told = 1;
    }
    return PyBool_FromLong(told);
}

PyDoc_STRVAR(rehome_doc,
"rehome($self, fd, /)\n--\n\n"
"Our r now sits at fd (a dup of the old number, which someone else took).");

static PyObject *Channel_rehome(Channel *self, PyObject *arg) {
    int fd = PyLong_AsLong(arg);
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    if (check_fd_is_stream(fd) < 0)
        return raise_errno(EINVAL, "rehome needs an AF_UNIX stream socket");
    self->own_r = fd;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(settle_doc,
"settle($self, /)\n--\n\n"
"Make readiness say what the rx ring holds (after the peer's data arrived\n"
"before this side existed, e.g. at accept).");

static PyObject *Channel_settle(Channel *self, PyObject *Py_UNUSED(ignored)) {
    if (!usable(self))
        return NULL;
    if (try_rx_locks(self)) { /* else a call is in progress: it settles as it leaves */
        settle_readable(self, 0);
        drop_rx_locks(self);
    }
    Py_RETURN_NONE;
}

static PyObject *Channel_get_timeout(Channel *self, void *closure) {
    if (self->timeout_ns < 0)
        Py_RETURN_NONE;
    return PyFloat_FromDouble((double)self->timeout_ns / 1e9);
}

static int Channel_set_timeout(Channel *self, PyObject *value, void *closure) {
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete timeout");
        return -1;
    }
    return parse_timeout(value, &self->timeout_ns);
}

static PyObject *Channel_get_busy(Channel *self, void *closure) {
    return PyLong_FromLongLong(self->adaptive ? -1 : self->spin_max_ns / 1000);
}

static int Channel_set_busy(Channel *self, PyObject *value, void *closure) {
    long long us = value == NULL ? -1 : PyLong_AsLongLong(value);
    if (us == -1 && PyErr_Occurred())
        return -1;
    if (us < -1 || us > 10000000LL) {
        raise_errno(EINVAL, "busy-poll time must be -1 (adaptive) or 0..10,000,000 microseconds");
        return -1;
    }
    self->adaptive = us < 0;
    self->spin_max_ns = us < 0 ? 50000 : us * 1000;
    self->spin_ns = self->spin_max_ns;
    return 0;
}

static int set_kernel_timeout(int64_t *slot, PyObject *value) {
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete a kernel timeout");
        return -1;
    }
    double t = PyFloat_AsDouble(value);
    if (t == -1.0 && PyErr_Occurred())
        return -1;
    *slot = t <= 0 ? 0 : (int64_t)(t * 1e9);
    return 0;
}

static PyObject *Channel_get_rcvtimeo(Channel *self, void *closure) {
    return PyFloat_FromDouble((double)self->rcvtimeo_ns / 1e9);
}
static int Channel_set_rcvtimeo(Channel *self, PyObject *value, void *closure) {
    return set_kernel_timeout(&self->rcvtimeo_ns, value);
}
static PyObject *Channel_get_sndtimeo(Channel *self, void *closure) {
    return PyFloat_FromDouble((double)self->sndtimeo_ns / 1e9);
}
static int Channel_set_sndtimeo(Channel *self, PyObject *value, void *closure) {
    return set_kernel_timeout(&self->sndtimeo_ns, value);
}

static PyObject *Channel_get_liveness(Channel *self, void *closure) {
    return PyFloat_FromDouble((double)self->liveness_ns / 1e9);
}
static int Channel_set_liveness(Channel *self, PyObject *value, void *closure) {
    int64_t ns;
    if (set_kernel_timeout(&ns, value) < 0)
        return -1;
    if (ns <= 0) {
        raise_errno(EINVAL, "the liveness period must be positive");
        return -1;
    }
    self->liveness_ns = ns;
    return 0;
}

static PyObject *Channel_get_bytes_out(Channel *self, void *closure) {
    return PyLong_FromUnsignedLongLong(self->bytes_out);
}

static PyObject *Channel_get_reset(Channel *self, void *closure) {
    int reset = self->reset_seen || self->fault;
    if (!reset && self->base != NULL && !self->closed)
        reset = (atomic_load_explicit(&self->rx->flags, memory_order_acquire) &
                 (RESET | FOREIGN)) != 0;
    return PyBool_FromLong(reset);
}

static PyObject *Channel_get_abortive(Channel *self, void *closure) {
    return PyBool_FromLong(self->abortive);
}

static int Channel_set_abortive(Channel *self, PyObject *value, void *closure) {
    int on = value == NULL ? 0 : PyObject_IsTrue(value);
    if (on < 0)
        return -1;
    self->abortive = on;
    return 0;
}

static PyObject *Channel_get_peer_dead(Channel *self, void *closure) {
    return PyBool_FromLong(self->peer_dead);
}

static int Channel_set_peer_dead(Channel *self, PyObject *value, void *closure) {
    if (value == NULL || !PyObject_IsTrue(value)) {
        PyErr_SetString(PyExc_ValueError, "peer_dead can only be set to True");
        return -1;
    }
    if (self->base != NULL && !self->closed)
        mark_dead(self);
    else
        self->peer_dead = 1;
    return 0;
}

/* Our receive window: what we let the peer have in flight towards us. Raising
 * it wakes a producer waiting for space, exactly as consuming does. */
static PyObject *Channel_get_window(Channel *self, void *closure) {
    if (!usable(self))
        return NULL;
    uint64_t window = atomic_load_explicit(&self->rx->window, memory_order_acquire);
    return PyLong_FromUnsignedLongLong(window < self->rx_size ? window : self->rx_size);
}

static int Channel_set_window(Channel *self, PyObject *value, void *closure) {
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete the window");
        return -1;
    }
    long long bytes = PyLong_AsLongLong(value);
    if (bytes == -1 && PyErr_Occurred())
        return -1;
    if (bytes < 0) {
        raise_errno(EINVAL, "a receive window cannot be negative");
        return -1;
    }
    if (!usable(self))
        return -1;
    uint64_t window = (uint64_t)bytes < self->rx_size ? (uint64_t)bytes : self->rx_size;
    atomic_store_explicit(&self->rx->window, (uint32_t)window, memory_order_seq_cst);
    release_space(self); /* fence, then wake a producer that waits for space */
    return 0;
}

static PyMethodDef Channel_methods[] = {
    {"recv", (PyCFunction)(void (*)(void))Channel_recv, METH_FASTCALL,
     "recv($self, bufsize, flags=0, /)\n--\n\nsocket.recv over the rx ring."},
    {"recv_into", (PyCFunction)(void (*)(void))Channel_recv_into, METH_FASTCALL,
     "recv_into($self, buffer, nbytes=0, flags=0, /)\n--\n\nsocket.recv_into over the rx ring."},
    {"send", (PyCFunction)(void (*)(void))Channel_send, METH_FASTCALL,
     "send($self, data, flags=0, /)\n--\n\nsocket.send over the tx ring."},
    {"sendall", (PyCFunction)(void (*)(void))Channel_sendall, METH_FASTCALL,
     "sendall($self, data, flags=0, /)\n--\n\nsocket.sendall over the tx ring."},
    {"shutdown", (PyCFunction)Channel_shutdown, METH_O,
     "shutdown($self, how, /)\n--\n\nsocket.shutdown for the rings."},
    {"close", (PyCFunction)Channel_close, METH_NOARGS, close_doc},
    {"hang_up", (PyCFunction)Channel_hang_up, METH_NOARGS, hang_up_doc},
    {"ready", (PyCFunction)Channel_ready, METH_NOARGS, ready_doc},
    {"stats", (PyCFunction)Channel_stats, METH_NOARGS, stats_doc},
    {"settle", (PyCFunction)Channel_settle, METH_NOARGS, settle_doc},
    {"rehome", (PyCFunction)Channel_rehome, METH_O, rehome_doc},
    {"trim", (PyCFunction)Channel_trim, METH_NOARGS, trim_doc},
    {"inspect_wakeups", (PyCFunction)Channel_inspect_wakeups, METH_NOARGS, inspect_wakeups_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Channel_getset[] = {
    {"timeout", (getter)Channel_get_timeout, (setter)Channel_set_timeout,
     "Seconds a call may wait: None blocks, 0.0 never waits.", NULL},
    {"busy_poll_us", (getter)Channel_get_busy, (setter)Channel_set_busy,
     "-1: adaptive spin then park; 0: park at once; N: spin up to N microseconds.", NULL},
    {"rcvtimeo", (getter)Channel_get_rcvtimeo, (setter)Channel_set_rcvtimeo,
     "SO_RCVTIMEO in seconds (0: none): a blocking recv gives EAGAIN after it.", NULL},
    {"sndtimeo", (getter)Channel_get_sndtimeo, (setter)Channel_set_sndtimeo,
     "SO_SNDTIMEO in seconds (0: none): a blocking send gives EAGAIN after it.", NULL},
    {"liveness", (getter)Channel_get_liveness, (setter)Channel_set_liveness,
     "Seconds between a parked recv's own looks at its peer (the watcher wakes it at "
     "once; this covers a process without one).", NULL},
    {"bytes_out", (getter)Channel_get_bytes_out, NULL,
     "Bytes this process sent on the channel (stats() without building a dict).", NULL},
    {"reset", (getter)Channel_get_reset, NULL,
     "The connection was reset (by the peer, a dead peer owing one, or a fault): TCP's "
     "state would be CLOSE.", NULL},
    {"abortive", (getter)Channel_get_abortive, (setter)Channel_set_abortive,
     "SO_LINGER (1, 0): our last close resets the peer (hang_up sets RESET).", NULL},
    {"peer_dead", (getter)Channel_get_peer_dead, (setter)Channel_set_peer_dead,
     "True once the peer's process is known to be gone.", NULL},
    {"window", (getter)Channel_get_window, (setter)Channel_set_window,
     "Our receive window: bytes the peer may have in flight towards us (clamped to the "
     "receive ring's size). Raising it wakes a peer waiting for space.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef Channel_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(Channel, weakrefs), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot Channel_slots[] = {
    {Py_tp_members, Channel_members},
    {Py_tp_doc, (void *)Channel_doc},
    {Py_tp_init, (void *)Channel_init},
    {Py_tp_new, (void *)PyType_GenericNew},
    {Py_tp_dealloc, (void *)Channel_dealloc},
    {Py_tp_methods, Channel_methods},
    {Py_tp_getset, Channel_getset},
    {0, NULL},
};

static PyType_Spec Channel_spec = {
    "loopfast._ring.Channel", sizeof(Channel), 0, Py_TPFLAGS_DEFAULT, Channel_slots,
};

/* SocketMethod: a socket class's data method implemented by the rings.
 *
 * RingSocket.send is a SocketMethod, not a Python function around
 * Channel.send: calling sock.send(data) reaches send_impl with no Python
 * frame in between. It is a method descriptor (Py_TPFLAGS_METHOD_DESCRIPTOR),
 * so the interpreter calls it with the socket as the first argument and no
 * bound method is made; it finds the Channel in the socket's "_channel"
 * attribute, which the socket class sets when the socket becomes
 * ring-carried. */

enum { SM_SEND, SM_SENDALL, SM_RECV, SM_RECV_INTO };

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    int which;
    PyObject *name;          /* str: the method's name */
    PyObject *doc;           /* str or None */
    PyObject *attr;          /* interned "_channel" */
    PyTypeObject *channel;   /* the Channel type, to check what the attribute holds */
} SocketMethod;

static PyObject *recv_into_keywords(Channel *ch, PyObject *const *args, Py_ssize_t nargs,
                                    PyObject *kwnames) {
    /* socket.recv_into(buffer, nbytes=0, flags=0) also takes its arguments by name. */
    static const char *const names[] = {"buffer", "nbytes", "flags"};
    PyObject *slots[3] = {NULL, NULL, NULL};
    Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
    if (check_nargs("recv_into", nargs + nkw, 1, 3) < 0)
        return NULL;
    for (Py_ssize_t i = 0; i < nargs; i++)
        slots[i] = args[i];
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, k);
        int found = -1;
        for (int i = 0; i < 3; i++)
            if (PyUnicode_CompareWithASCIIString(key, names[i]) == 0)
                found = i;
        if (found < 0) {
            PyErr_Format(PyExc_TypeError, "'%U' is an invalid keyword argument for recv_into()",
                         key);
            return NULL;
        }
        if (slots[found] != NULL) {
            PyErr_Format(PyExc_TypeError,
                         "argument for recv_into() given by name ('%U') and position (%d)", key,
                         found + 1);
            return NULL;
        }
        slots[found] = args[nargs + k];
    }
    if (slots[0] == NULL) {
        PyErr_SetString(PyExc_TypeError, "recv_into() missing required argument 'buffer' (pos 1)");
        return NULL;
    }
    PyObject *zero = PyLong_FromLong(0);
    if (zero == NULL)
        return NULL;
    PyObject *full[3] = {slots[0], slots[1] ? slots[1] : zero, slots[2] ? slots[2] : zero};
    PyObject *result = recv_into_impl(ch, full, 3);
    Py_DECREF(zero);
    return result;
}

static PyObject *SocketMethod_vectorcall(PyObject *callable, PyObject *const *args,
                                         size_t nargsf, PyObject *kwnames) {
    SocketMethod *m = (SocketMethod *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs < 1) {
        PyErr_Format(PyExc_TypeError, "unbound method %U() needs a socket", m->name);
        return NULL;
    }
    PyObject *found = PyObject_GetAttr(args[0], m->attr);
    if (found == NULL)
        return NULL;
    if (!PyObject_TypeCheck(found, m->channel)) {
        PyErr_Format(PyExc_TypeError, "%U() needs a ring-carried socket, not %.100s", m->name,
                     Py_TYPE(args[0])->tp_name);
        Py_DECREF(found);
        return NULL;
    }
    Channel *ch = (Channel *)found;
    PyObject *result;
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0) {
        if (m->which == SM_RECV_INTO)
            result = recv_into_keywords(ch, args + 1, nargs - 1, kwnames);
        else
            result = PyErr_Format(PyExc_TypeError, "%U() takes no keyword arguments", m->name);
    } else if (m->which == SM_SEND || m->which == SM_SENDALL) {
        result = send_impl(ch, args + 1, nargs - 1, m->which == SM_SENDALL);
    } else if (m->which == SM_RECV) {
        result = recv_impl(ch, args + 1, nargs - 1);
    } else {
        result = recv_into_impl(ch, args + 1, nargs - 1);
    }
    Py_DECREF(found);
    return result;
}

static PyObject *SocketMethod_get(PyObject *self, PyObject *obj, PyObject *type) {
    if (obj == NULL || obj == Py_None)
        return Py_NewRef(self);
    return PyMethod_New(self, obj);
}

static int SocketMethod_traverse(SocketMethod *m, visitproc visit, void *arg) {
    Py_VISIT(m->name);
    Py_VISIT(m->doc);
    Py_VISIT(m->channel);
    Py_VISIT(Py_TYPE(m));
    return 0;
}

static int SocketMethod_clear(SocketMethod *m) {
    Py_CLEAR(m->name);
    Py_CLEAR(m->doc);
    Py_CLEAR(m->attr);
    Py_CLEAR(m->channel);
    return 0;
}

static void SocketMethod_dealloc(SocketMethod *m) {
    PyTypeObject *tp = Py_TYPE(m);
    PyObject_GC_UnTrack(m);
    SocketMethod_clear(m);
    tp->tp_free((PyObject *)m);
    Py_DECREF(tp);
}

static PyObject *SocketMethod_repr(SocketMethod *m) {
    return PyUnicode_FromFormat("<ring-carried socket method %U>", m->name);
}

static PyMemberDef SocketMethod_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(SocketMethod, vectorcall), READONLY, NULL},
    {"__name__", T_OBJECT, offsetof(SocketMethod, name), READONLY, NULL},
    {"__qualname__", T_OBJECT, offsetof(SocketMethod, name), READONLY, NULL},
    {"__doc__", T_OBJECT, offsetof(SocketMethod, doc), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot SocketMethod_slots[] = {
    {Py_tp_members, SocketMethod_members},
    {Py_tp_call, (void *)PyVectorcall_Call},
    {Py_tp_descr_get, (void *)SocketMethod_get},
    {Py_tp_traverse, (void *)SocketMethod_traverse},
    {Py_tp_clear, (void *)SocketMethod_clear},
    {Py_tp_dealloc, (void *)SocketMethod_dealloc},
    {Py_tp_repr, (void *)SocketMethod_repr},
    {0, NULL},
};

static PyType_Spec SocketMethod_spec = {
    "loopfast._ring.SocketMethod", sizeof(SocketMethod), 0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_METHOD_DESCRIPTOR |
        Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    SocketMethod_slots,
};

PyDoc_STRVAR(socket_method_doc,
"socket_method(name, doc, /)\n--\n\n"
"A method for a socket class whose instances carry a Channel in their\n"
"\"_channel\" attribute: name is send, sendall, recv or recv_into, and the\n"
"method is Channel's with no Python frame on the way. Raises ValueError for\n"
"another name.");

static PyObject *socket_method(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    static const char *const names[] = {"send", "sendall", "recv", "recv_into"};
    if (nargs != 2 || !PyUnicode_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "socket_method(name, doc) takes a str and a doc");
        return NULL;
    }
    int which = -1;
    for (int i = 0; i < 4; i++)
        if (PyUnicode_CompareWithASCIIString(args[0], names[i]) == 0)
            which = i;
    if (which < 0) {
        PyErr_Format(PyExc_ValueError, "no ring-carried socket method %R", args[0]);
        return NULL;
    }
    PyObject *channel = PyObject_GetAttrString(module, "Channel");
    PyObject *type = PyObject_GetAttrString(module, "SocketMethod");
    if (channel == NULL || type == NULL) {
        Py_XDECREF(channel);
        Py_XDECREF(type);
        return NULL;
    }
    SocketMethod *m = PyObject_GC_New(SocketMethod, (PyTypeObject *)type);
    Py_DECREF(type); /* the instance holds its own reference (PyObject_GC_New took it) */
    if (m == NULL) {
        Py_DECREF(channel);
        return NULL;
    }
    m->vectorcall = SocketMethod_vectorcall;
    m->which = which;
    m->name = Py_NewRef(args[0]);
    m->doc = Py_NewRef(args[1]);
    m->attr = PyUnicode_InternFromString("_channel");
    m->channel = (PyTypeObject *)channel;
    if (m->attr == NULL) {
        Py_DECREF(m);
        return NULL;
    }
    PyObject_GC_Track(m);
    return (PyObject *)m;
}

/* ---- the event loop's spin ----------------------------------------------
 *
 * An asyncio selector loop about to sleep in epoll first watches the rings of
 * its ring connections for a while (aio_selector.py). It takes each watched
 * channel's rx locks without waiting (close() takes the local one before it
 * unmaps, and a recv in any process holds the shared one while it owns
 * consumer_waiting), so nothing is unmapped under the spin and no recv's
 * consumer_waiting is overwritten; a channel whose lock is busy is left to
 * epoll. A channel watched for reading is marked CW_SPINNING (store, fence,
 * look: the Dekker pairing with announce(), as wait_for's), so its producer
 * publishes without a syscall; on leaving it goes back to CW_OUTSIDE with
 * settle_readable's store, fence, look, and whatever that look finds is
 * reported ready: the caller hands it to a recv (whose settle_readable makes
 * r level-true again) or settles the channel (Channel.settle) when it stops
 * watching it before any recv. */

#define WANT_READ 1
#define WANT_WRITE 2
/* An adaptive channel's ceiling in a loop's spin: larger than a blocking
 * call's 50 µs, because a loop waits for a peer that runs Python between
 * messages (an HTTP framework: 50-200 µs a request), and a spin that ends
 * before the answer costs a wake-up on both sides. The budget still shrinks
 * to nothing when spinning does not pay. Measured with `loopfast bench apps`:
 * aiohttp 1.72x -> 2.14x TCP, websockets 4.0x -> 4.6x. */
#define LOOP_SPIN_MAX_NS 200000
#define SPIN_STACK 32

typedef struct {
    Channel *ch;
    int want;  /* WANT_READ | WANT_WRITE */
    int held;  /* 0: not ours to look at; 1: local rx lock; 2: both rx locks, marked */
    int hit;   /* what it is ready for */
} watched;

static int look_watched(watched *w) {
    int hit = 0;
    if ((w->want & WANT_READ) && look_readable(w->ch))
        hit |= WANT_READ;
    if ((w->want & WANT_WRITE) && look_writable(w->ch))
        hit |= WANT_WRITE;
    w->hit |= hit;
    return hit;
}

/* Parse (Channel, want) pairs into w; -1 with an exception set. The largest
 * spin ceiling (busy_poll_us) among them goes to *cap. */
static int parse_watched(PyObject *module, PyObject *entries, watched *w, Py_ssize_t n,
                         int64_t *cap) {
    PyObject *type = PyObject_GetAttrString(module, "Channel");
    if (type == NULL)
        return -1;
    *cap = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyTuple_GET_ITEM(entries, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2 ||
            !PyObject_TypeCheck(PyTuple_GET_ITEM(item, 0), (PyTypeObject *)type)) {
            Py_DECREF(type);
            PyErr_SetString(PyExc_TypeError, "spin_ready takes (Channel, want) pairs");
            return -1;
        }
        long want = PyLong_AsLong(PyTuple_GET_ITEM(item, 1));
        if (want == -1 && PyErr_Occurred()) {
            Py_DECREF(type);
            return -1;
        }
        w[i].ch = (Channel *)PyTuple_GET_ITEM(item, 0);
        w[i].want = (int)want & (WANT_READ | WANT_WRITE);
        w[i].held = w[i].hit = 0;
        int64_t ceiling = w[i].ch->adaptive ? LOOP_SPIN_MAX_NS : w[i].ch->spin_max_ns;
        if (ceiling > *cap)
            *cap = ceiling;
    }
    Py_DECREF(type);
    return 0;
}

/* With the GIL: take what can be taken and look once. Returns hits; *held
 * says how many channels the spin may look at. */
static int take_watched(watched *w, Py_ssize_t n, Py_ssize_t *held) {
    int hits = 0;
    *held = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Channel *ch = w[i].ch;
        if (ch->base == NULL || ch->closed) { /* as ready() answers for it */
            w[i].hit = w[i].want;
            hits += w[i].want != 0;
            continue;
        }
        if (w[i].want & WANT_READ) {
            if (!try_rx_locks(ch))
                continue;
            w[i].held = 2;
        } else if (w[i].want) {
            if (!PyThread_acquire_lock(ch->rx_lock, NOWAIT_LOCK))
                continue;
            w[i].held = 1;
        }
        *held += 1;
        hits += look_watched(&w[i]) != 0;
    }
    return hits;
}

static void release_watched(watched *w, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) {
        if (w[i].held == 2)
            drop_rx_locks(w[i].ch);
        else if (w[i].held == 1)
            PyThread_release_lock(w[i].ch->rx_lock);
    }
}

typedef struct {
    int64_t budget, every; /* ns: how long to spin; how often to look at epoll */
    int epfd;
    int epoll_ready;       /* epoll_wait found an event */
    int64_t epoll_at;      /* when epoll was last looked at (0: not in this spin) */
} spin_plan;

/* Without the GIL: mark, spin until a hit, an epoll event or the budget's
 * end, unmark and look again. Returns the number of channels hit. */
static int spin_watched(watched *w, Py_ssize_t n, spin_plan *plan) {
    int hits = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (w[i].held == 2)
            atomic_store_explicit(&w[i].ch->rx->consumer_waiting, CW_SPINNING,
                                  memory_order_seq_cst);
    atomic_thread_fence(memory_order_seq_cst);
    int64_t start = now_ns(), until = start + plan->budget, next_epoll = start + plan->every;
    unsigned looks = 0;
    while (!hits) {
        for (Py_ssize_t i = 0; i < n; i++)
            if (w[i].held)
                hits += look_watched(&w[i]) != 0;
        if (hits)
            break;
        cpu_relax();
        looks += (unsigned)n;
        if (looks < 64)
            continue;
        looks = 0;
        int64_t t = now_ns();
        if (t >= next_epoll && plan->epfd >= 0) {
            struct epoll_event ev;
            plan->epoll_at = t;
            next_epoll = t + plan->every;
            if (epoll_wait(plan->epfd, &ev, 1, 0) > 0) {
                plan->epoll_ready = 1;
                break;
            }
        }
        if (t >= until)
            break;
    }
    /* Leaving: CW_OUTSIDE, fence, look (settle_readable's order): a producer
     * that read CW_SPINNING published before our store, so this look sees it. */
    for (Py_ssize_t i = 0; i < n; i++)
        if (w[i].held == 2)
            atomic_store_explicit(&w[i].ch->rx->consumer_waiting, CW_OUTSIDE,
                                  memory_order_seq_cst);
    atomic_thread_fence(memory_order_seq_cst);
    hits = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (w[i].held == 2)
            look_watched(&w[i]);
        hits += w[i].hit != 0;
    }
    return hits;
}

PyDoc_STRVAR(spin_ready_doc,
"spin_ready(entries, epfd, budget_ns, epoll_every_ns, /)\n--\n\n"
"Watch ring connections as an event loop does before it sleeps. entries is a\n"
"tuple of (Channel, want) pairs, want 1 for reading, 2 for writing, 3 both.\n"
"Looks once; if nothing is ready and budget_ns > 0, spins with the GIL released\n"
"for up to min(budget_ns, the largest ceiling among the channels: busy_poll_us,\n"
"200 us for adaptive ones),\n"
"looking at the epoll instance epfd (-1: none) every epoll_every_ns, until a\n"
"channel is ready or epoll has an event. A channel whose rx lock is busy (a\n"
"call in progress) is not looked at. Returns (hits, epoll_ready, epoll_at,\n"
"spun, cap_ns): hits lists (index, ready) pairs, ready in the bits of want;\n"
"epoll_at is the time.monotonic_ns() of the last look at epoll (0: none);\n"
"spun whether it spun (the first look found nothing); cap_ns the largest\n"
"ceiling among the channels. A channel reported readable\n"
"may have no bell in its fileno: recv from it, or call its settle().");

static PyObject *spin_ready(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    long long budget, every;
    int epfd;
    if (nargs != 4 || !PyTuple_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError,
                        "spin_ready(entries: tuple, epfd, budget_ns, epoll_every_ns)");
        return NULL;
    }
    if (int_arg(args[1], &epfd) < 0 || (budget = PyLong_AsLongLong(args[2])) == -1 ||
        (every = PyLong_AsLongLong(args[3])) == -1) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "budget_ns and epoll_every_ns must be >= 0");
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(args[0]);
    watched stack[SPIN_STACK], *w = n <= SPIN_STACK ? stack : PyMem_Calloc((size_t)n, sizeof *w);
    if (w == NULL)
        return PyErr_NoMemory();
    spin_plan plan = {budget < 0 ? 0 : budget, every < 1000 ? 1000 : every, epfd, 0, 0};
    int64_t cap;
    PyObject *result = NULL;
    if (parse_watched(module, args[0], w, n, &cap) < 0)
        goto done;
    if (plan.budget > cap)
        plan.budget = cap;
    Py_ssize_t held;
    int hits = take_watched(w, n, &held), spun = hits == 0 && held > 0 && plan.budget > 0;
    if (spun) {
        PyThreadState *save = PyEval_SaveThread();
        hits = spin_watched(w, n, &plan);
        PyEval_RestoreThread(save);
    }
    release_watched(w, n);
    PyObject *list = PyList_New(0);
    for (Py_ssize_t i = 0; list != NULL && i < n; i++) {
        if (!w[i].hit)
            continue;
        PyObject *pair = Py_BuildValue("(ni)", i, w[i].hit);
        if (pair == NULL || PyList_Append(list, pair) < 0)
            Py_CLEAR(list);
        Py_XDECREF(pair);
    }
    if (list != NULL)
        result = Py_BuildValue("(NOLOL)", list, plan.epoll_ready ? Py_True : Py_False,
                               (long long)plan.epoll_at, spun ? Py_True : Py_False,
                               (long long)cap);
done:
    if (w != stack)
        PyMem_Free(w);
    return result;
}

/* ---- arenas ---------------------------------------------------------------
 *
 * Making a connection's rings cost more than anything else in its set-up: a
 * memfd, a mapping on each side, three pages allocated, zeroed and faulted in
 * on each side, and all of it torn down at close. An arena is one sealed memfd
 * of up to MAX_SLOTS slots (a header page and the two rings each), which a
 * client makes for one destination (the listener's address and its owner's
 * uid: another user's server never sees it) and maps once; each server process
 * maps it once, at the first hello that carries it, and keeps it mapped
 * (ring_link's arena cache, keyed by the memfd's inode: the mapping holds the
 * file, so the inode stays its own). A hello names its slot. A slot whose
 * connection ended on both sides is claimed again with its pages in place: no
 * syscall, no page fault.
 *
 * Safety. A slot's header and rings are read and validated as any connection's
 * (positions may only move forward, sizes come from the handshake), so a peer
 * that writes a slot it no longer owns can only corrupt connections of this
 * very arena: its own, with us. Each side keeps its positions in its private
 * side state, never in the arena. The client claims a slot only when its own
 * last close of the slot's connection is over and the server has said its own
 * is (server_gone, see leave_slot); a slot that cannot be known free is lost
 * (never claimed again), and an arena with nothing left to claim is replaced.
 * Each claim bumps the slot's generation, which every call checks (usable):
 * a socket object that outlived its fd (os.close in a fork()ed child, then
 * the last close elsewhere) fails with ECONNRESET instead of touching the
 * connection that has the slot now.
 * A server refuses a slot one of its Channels uses. Every server process of
 * one destination that accepted one of the client's connections maps the
 * whole arena: they share one uid (the listener's owner's, which the client
 * checked), as TCP's connections to one server are readable by its uid. */

PyDoc_STRVAR(Arena_doc,
"Arena(memfd, c2s_size, s2c_size, slots, trusted=False, /)\n--\n\n"
"Map the arena memfd (see create_memfd; the fd is not kept): slots of\n"
"(header, c2s ring, s2c ring). Channel(arena, ..., slot) puts a connection in\n"
"a slot; the mapping lives while the arena or one of its Channels does.\n"
"Raises OSError(EINVAL) when the memfd is not sealed, its size is not slots\n"
"whole slots of these sizes, or a size or the slot count (1 to 64) is bad;\n"
"trusted (this process made it) skips the seal and size checks.");

static int Arena_init(Arena *self, PyObject *args, PyObject *kwds) {
    int memfd, trusted = 0;
    unsigned long long c2s, s2c;
    unsigned int slots;
    if (!PyArg_ParseTuple(args, "iKKI|p:Arena", &memfd, &c2s, &s2c, &slots, &trusted))
        return -1;
    if (self->base != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Arena is already initialised");
        return -1;
    }
    if (check_ring_sizes(c2s, s2c) < 0)
        return -1;
    if (slots < 1 || slots > MAX_SLOTS) {
        raise_errno(EINVAL, "an arena holds 1 to 64 slots");
        return -1;
    }
    size_t slot_len = HEADER_SIZE + (size_t)c2s + (size_t)s2c, len = slot_len * slots;
    if (check_memfd(memfd, len, trusted) < 0)
        return -1;
    void *base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
    if (base == MAP_FAILED) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    self->base = base;
    self->len = len;
    self->slot_len = slot_len;
    self->c2s = c2s;
    self->s2c = s2c;
    self->slots = slots;
    return 0;
}

static void Arena_dealloc(Arena *self) {
    if (self->base != NULL)
        munmap(self->base, self->len);
    PyTypeObject *tp = Py_TYPE(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

PyDoc_STRVAR(Arena_claim_doc,
"claim($self, c2s_window=-1, s2c_window=-1, /)\n--\n\n"
"A client's next connection: the first slot that is free (never used, or\n"
"its connection is over on both sides), its header made fresh with these\n"
"receive windows (as create_memfd's). Returns the slot, or None when none\n"
"is free. No syscall.");

static PyObject *Arena_claim(Arena *self, PyObject *args) {
    long long windows[2] = {-1, -1};
    if (!PyArg_ParseTuple(args, "|LL:claim", &windows[0], &windows[1]))
        return NULL;
    if (self->base == NULL)
        return raise_errno(EBADF, NULL);
    for (uint32_t i = 0; i < self->slots; i++) {
        if ((self->claimed | self->used | self->lost) & (1ULL << i))
            continue;
        shm_header *h = (shm_header *)(self->base + (size_t)i * self->slot_len);
        /* Never used (zero), or the server's last close is over. */
        if (h->magic != 0 && atomic_load_explicit(&h->server_gone, memory_order_acquire) != 1)
            continue;
        uint32_t generation = atomic_load_explicit(&h->generation, memory_order_acquire) + 1;
        fresh_header(h, self->c2s, self->s2c, windows);
        atomic_store_explicit(&h->generation, generation, memory_order_relaxed);
        atomic_thread_fence(memory_order_release);
        self->claimed |= 1ULL << i; /* until its Channel is made, or unclaim() */
        return PyLong_FromUnsignedLong(i);
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(Arena_unclaim_doc,
"unclaim($self, slot, offered, /)\n--\n\n"
"A claimed slot whose Channel was never made: free again if its hello was\n"
"never sent (offered False), else never claimed again (a server may hold it).");

static PyObject *Arena_unclaim(Arena *self, PyObject *args) {
    unsigned int slot;
    int offered;
    if (!PyArg_ParseTuple(args, "Ip:unclaim", &slot, &offered))
        return NULL;
    if (slot >= self->slots || !(self->claimed & (1ULL << slot)))
        return raise_errno(EINVAL, "no such slot claimed");
    if (!offered && self->base != NULL) /* never used again: claimable, its generation kept */
        ((shm_header *)(self->base + (size_t)slot * self->slot_len))->magic = 0;
    else
        self->lost |= 1ULL << slot;
    self->claimed &= ~(1ULL << slot);
    Py_RETURN_NONE;
}

static PyObject *Arena_get_slots(Arena *self, void *closure) {
    return PyLong_FromUnsignedLong(self->slots);
}

static PyObject *Arena_get_in_use(Arena *self, void *closure) {
    return PyLong_FromLong(__builtin_popcountll(self->claimed | self->used));
}

static PyObject *Arena_get_sizes(Arena *self, void *closure) {
    return Py_BuildValue("(KK)", (unsigned long long)self->c2s, (unsigned long long)self->s2c);
}

static PyMethodDef Arena_methods[] = {
    {"claim", (PyCFunction)Arena_claim, METH_VARARGS, Arena_claim_doc},
    {"unclaim", (PyCFunction)Arena_unclaim, METH_VARARGS, Arena_unclaim_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Arena_getset[] = {
    {"slots", (getter)Arena_get_slots, NULL, "How many slots the arena holds.", NULL},
    {"in_use", (getter)Arena_get_in_use, NULL,
     "Slots claimed or used by a Channel of this process.", NULL},
    {"sizes", (getter)Arena_get_sizes, NULL, "(c2s_size, s2c_size) of every slot.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot Arena_slots[] = {
    {Py_tp_doc, (void *)Arena_doc},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_init, (void *)Arena_init},
    {Py_tp_dealloc, (void *)Arena_dealloc},
    {Py_tp_methods, Arena_methods},
    {Py_tp_getset, Arena_getset},
    {0, NULL},
};

static PyType_Spec Arena_spec = {
    "loopfast._ring.Arena", sizeof(Arena), 0, Py_TPFLAGS_DEFAULT, Arena_slots,
};

PyDoc_STRVAR(create_doc,
"create_memfd(c2s_size, s2c_size, c2s_window=-1, s2c_window=-1, slots=1, /)\n--\n\n"
"A new sealed memfd holding a fresh header and two rings; returns its fd\n"
"(close-on-exec). Each ring's receive window starts at the one given (clamped\n"
"to the ring's size; -1: the whole ring); from then on only that ring's\n"
"consumer changes it (Channel.window). slots > 1 makes an arena of that many\n"
"(header, rings) slots, every header zero until Arena.claim writes it.\n"
"Raises OSError(EINVAL) for a bad size or slot count.");

static PyObject *create_memfd(PyObject *module, PyObject *args) {
    unsigned long long c2s, s2c;
    long long windows[2] = {-1, -1};
    unsigned int slots = 1;
    if (!PyArg_ParseTuple(args, "KK|LLI:create_memfd", &c2s, &s2c, &windows[0], &windows[1],
                          &slots))
        return NULL;
    if (slots < 1 || slots > MAX_SLOTS)
        return raise_errno(EINVAL, "an arena holds 1 to 64 slots");
    if (check_ring_sizes(c2s, s2c) < 0)
        return NULL;
    size_t len = (HEADER_SIZE + (size_t)c2s + (size_t)s2c) * slots;
    int fd = memfd_create("loopfast-ring", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    if (ftruncate(fd, (off_t)len) < 0)
        goto fail;
    /* Written with pwrite, not through a mapping: an munmap in a process with
     * threads costs a TLB shootdown, and this runs once per connection. An
     * arena's slots get theirs when claimed (Arena.claim): zero means never used. */
    if (slots == 1) {
        shm_header h;
        fresh_header(&h, c2s, s2c, windows);
        if (pwrite(fd, &h, sizeof h, 0) != (ssize_t)sizeof h) {
            if (errno == 0)
                errno = EIO;
            goto fail;
        }
    }
    if (fcntl(fd, F_ADD_SEALS, REQUIRED_SEALS) < 0)
        goto fail;
    return PyLong_FromLong(fd);
fail:
    {
        int err = errno;
        close(fd);
        errno = err;
    }
    return PyErr_SetFromErrno(PyExc_OSError);
}

/* Forks this process came out of (the child's count goes up): parts made
 * ahead of need (ring_link's pool) are not handed out across one, whoever
 * forked, Python's os.fork or a C library. */
static unsigned long forks_seen;

static void after_fork_child(void) {
    seal_slabs();
    forks_seen++;
}

PyDoc_STRVAR(forks_doc,
"forks($self, /)\n--\n\n"
"How many fork()s made this process (any fork: os.fork, or C code calling\n"
"fork() with no Python hook). No syscall.");

static PyObject *forks(PyObject *module, PyObject *Py_UNUSED(ignored)) {
    return PyLong_FromUnsignedLong(forks_seen);
}

/* ---- the rendezvous's hot calls ----------------------------------------
 *
 * Not rings: the server side of the handshake (handshake.py) made per
 * arriving client, in C because its Python took a third of a connection's
 * set-up. They know two facts of the hello's format: its flags are the
 * big-endian 16 bits at offset 6, and bit 0 (a ring) adds ext bytes. */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <sys/un.h>

PyDoc_STRVAR(take_hello_doc,
"take_hello(listen_fd, base, ext, max_fds, /)\n--\n\n"
"Accept one connection from the AF_UNIX listener listen_fd (blocking, as\n"
"accept(2) makes it; close-on-exec) and take its hello in one read. None\n"
"when nothing waits. Else (fd, pid, uid, gid, data, fds, truncated): the\n"
"client's credentials (SO_PEERCRED) and data, its first message of at most\n"
"base + ext bytes, consumed with the fds it carried (close-on-exec;\n"
"truncated: the kernel cut some off, as recvmsg's MSG_CTRUNC): a loopfast\n"
"client's whole hello (it sends it as one message, with fds, and the read\n"
"stops behind it), anything else for the caller to refuse; b'' when the\n"
"stream ended first or its credentials cannot be read; None when nothing is\n"
"queued yet (nothing consumed). The caller owns fd and fds. Raises OSError\n"
"as accept4 (EMFILE...), and then owns nothing.");

static PyObject *take_hello(PyObject *module, PyObject *args) {
    int lfd, max_fds;
    Py_ssize_t base, ext;
    if (!PyArg_ParseTuple(args, "innn:take_hello", &lfd, &base, &ext, &max_fds))
        return NULL;
    if (base < 8 || ext < 0 || base + ext > 4096 || max_fds < 0 || max_fds > 64)
        return raise_errno(EINVAL, "take_hello: bad sizes");
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC); /* blocking, as accept(2) makes sockets */
    if (fd < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED)
            Py_RETURN_NONE;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    struct ucred cred = {0, 0, 0};
    socklen_t clen = sizeof cred;
    int nocred = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0;
    char buf[4096];
    int fds[64];
    int nfds = 0, truncated = 0;
    PyObject *data = NULL;
    /* One read, no peek: every hello carries fds (handshake.py), and a read stops
     * right after the message that carried fds, so the data behind a hello stays
     * queued. A read shorter than a hello is no loopfast client's: ours sends its
     * hello in one message, which the kernel queues whole. */
    char control[CMSG_SPACE(sizeof(int) * 64)];
    struct iovec iov = {buf, (size_t)(base + ext)};
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)max_fds);
    ssize_t got = nocred ? 0 : recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        data = PyBytes_FromStringAndSize(NULL, 0); /* the stream ended (or broke) */
    } else if (got > 0) {
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                continue;
            size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            int *in = (int *)CMSG_DATA(c);
            for (size_t j = 0; j < k; j++) {
                if (nfds < 64)
                    memcpy(&fds[nfds++], &in[j], sizeof(int));
                else {
                    int extra;
                    memcpy(&extra, &in[j], sizeof(int));
                    close(extra);
                }
            }
        }
        truncated = (msg.msg_flags & MSG_CTRUNC) != 0;
        data = PyBytes_FromStringAndSize(buf, got);
    }
    if (data == NULL && PyErr_Occurred()) {
        close(fd);
        for (int j = 0; j < nfds; j++)
            close(fds[j]);
        return NULL;
    }
    PyObject *list = PyList_New(nfds);
    if (list == NULL) {
        Py_XDECREF(data);
        close(fd);
        for (int j = 0; j < nfds; j++)
            close(fds[j]);
        return NULL;
    }
    for (int j = 0; j < nfds; j++) {
        PyObject *v = PyLong_FromLong(fds[j]);
        if (v == NULL) {
            for (int k = j; k < nfds; k++)
                close(fds[k]);
            Py_DECREF(list);
            Py_XDECREF(data);
            close(fd);
            return NULL;
        }
        PyList_SET_ITEM(list, j, v);
    }
    PyObject *out = Py_BuildValue("(iiIINNO)", fd, (int)cred.pid, (unsigned)cred.uid,
                                  (unsigned)cred.gid, data != NULL ? data : Py_NewRef(Py_None),
                                  list, truncated ? Py_True : Py_False);
    if (out == NULL) { /* MemoryError: nothing was handed on */
        close(fd);
        for (int j = 0; j < nfds; j++)
            close(fds[j]);
    }
    return out;
}

PyDoc_STRVAR(tcp_name_doc,
"tcp_name(fd, /)\n--\n\n"
"(family, host, port) that the TCP socket fd is bound to (getsockname), or\n"
"None when fd is no TCP socket of AF_INET or AF_INET6 (no socket object\n"
"made). IPv6 scope ids are dropped. Raises OSError only for a bad fd.");

static PyObject *tcp_name(PyObject *module, PyObject *arg) {
    int fd;
    if (int_arg(arg, &fd) < 0)
        return NULL;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
        if (errno == ENOTSOCK)
            Py_RETURN_NONE;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)
        Py_RETURN_NONE;
    int proto = 0;
    socklen_t plen = sizeof proto;
    if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &plen) < 0 || proto != IPPROTO_TCP)
        Py_RETURN_NONE; /* TCP implies SOCK_STREAM */
    char host[INET6_ADDRSTRLEN];
    int port;
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        port = ntohs(a->sin_port);
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        port = ntohs(a->sin6_port);
    }
    return Py_BuildValue("(isi)", (int)ss.ss_family, host, port);
}

PyDoc_STRVAR(rendezvous_doc,
"rendezvous(names, uid, hello, fds, onto, /)\n--\n\n"
"The client's side of the rendezvous, in one call. Connect a new non-blocking,\n"
"close-on-exec AF_UNIX stream to the first of *names* (a tuple of bytes;\n"
"abstract when one starts with a NUL) where somebody listens (a refused\n"
"connect leaves the stream free for the next name) and read its peer's\n"
"SO_PEERCRED. When the peer's uid is *uid* (-1: never), send *hello* with\n"
"*fds* (SCM_RIGHTS; -1 in *fds* stands for the new stream itself) and, when\n"
"*onto* >= 0, move the stream to fd number *onto* (dup3, close-on-exec).\n"
"None when nobody listens at any name (ECONNREFUSED, ENOENT; the stream is\n"
"kept for the next call, see probe_held); else (fd, pid,\n"
"uid, gid, sent, index): fd the stream (*onto* once moved; where it was if\n"
"dup3 failed), sent whether the hello went, index the name's in *names*. The\n"
"caller owns fd. Raises BlockingIOError when a name's backlog is full,\n"
"OSError as socket, connect, getsockopt or sendmsg (a hello cut short:\n"
"EPIPE); nothing is left open then.");

/* The stream of a look that found nobody, kept for the next look: a refused
 * connect leaves an AF_UNIX stream free to connect again, and a client of a
 * server that does not take part (a plain TCP one) then pays two connects
 * and an fstat per connection instead of a socket and a close more. It is
 * known by its inode, so a program that closed the number (closerange) or
 * reused it is never touched, and by the fork count, so a child closes its
 * copy of its parent's and makes its own. The GIL serialises every use. */
static int probe_fd = -1;
static dev_t probe_dev;
static ino_t probe_ino;
static unsigned long probe_forks;

static int probe_is_ours(int fd) {
    struct stat st;
    return fstat(fd, &st) == 0 && st.st_ino == probe_ino && st.st_dev == probe_dev;
}

static int probe_take(void) {
    int fd = probe_fd;
    probe_fd = -1;
    if (fd >= 0 && probe_is_ours(fd)) {
        if (probe_forks == forks_seen)
            return fd;
        close(fd); /* this child's copy of its parent's stream */
    }
    return socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
}

static void probe_keep(int fd) {
    struct stat st;
    if (probe_fd >= 0 || fstat(fd, &st) < 0) {
        close(fd);
        return;
    }
    probe_fd = fd;
    probe_dev = st.st_dev;
    probe_ino = st.st_ino;
    probe_forks = forks_seen;
}

PyDoc_STRVAR(probe_held_doc,
"probe_held($module, /)\n--\n\n"
"1 when rendezvous() keeps a stream for its next look (an fd that belongs to\n"
"no connection), else 0. No syscall.");

static PyObject *probe_held(PyObject *module, PyObject *Py_UNUSED(ignored)) {
    return PyLong_FromLong(probe_fd >= 0 && probe_forks == forks_seen);
}

static PyObject *rendezvous(PyObject *module, PyObject *args) {
    Py_buffer hello;
    long long want_uid;
    PyObject *names, *fd_list;
    int onto;
    if (!PyArg_ParseTuple(args, "O!Ly*O!i:rendezvous", &PyTuple_Type, &names, &want_uid, &hello,
                          &PyList_Type, &fd_list, &onto))
        return NULL;
    PyObject *out = NULL;
    Py_ssize_t nnames = PyTuple_GET_SIZE(names);
    Py_ssize_t nfds = PyList_GET_SIZE(fd_list);
    int fds[16];
    if (nnames < 1 || nnames > 8 || nfds > 16 || (want_uid >= 0 && hello.len < 1)) {
        raise_errno(EINVAL, "rendezvous: bad names, hello or fds");
        goto done;
    }
    for (Py_ssize_t j = 0; j < nnames; j++) {
        PyObject *name = PyTuple_GET_ITEM(names, j);
        Py_ssize_t len = PyBytes_Check(name) ? PyBytes_GET_SIZE(name) : -1;
        if (len < 1 || (size_t)len + (PyBytes_AS_STRING(name)[0] != 0) >
                           sizeof ((struct sockaddr_un *)0)->sun_path) {
            raise_errno(EINVAL, "rendezvous: a name is no bytes of a socket's path size");
            goto done;
        }
    }
    for (Py_ssize_t j = 0; j < nfds; j++) {
        long v = PyLong_AsLong(PyList_GET_ITEM(fd_list, j));
        if (v == -1 && PyErr_Occurred())
            goto done;
        if (v < -1 || v > INT_MAX) {
            raise_errno(EBADF, "rendezvous: bad fd");
            goto done;
        }
        fds[j] = (int)v;
    }
    int fd = probe_take();
    if (fd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        goto done;
    }
    Py_ssize_t index = 0;
    for (;; index++) {
        if (index == nnames) { /* nobody at any name: the stream waits for the next look */
            probe_keep(fd);
            out = Py_NewRef(Py_None);
            goto done;
        }
        PyObject *name = PyTuple_GET_ITEM(names, index);
        size_t len = (size_t)PyBytes_GET_SIZE(name);
        const char *raw = PyBytes_AS_STRING(name);
        struct sockaddr_un addr = {0};
        addr.sun_family = AF_UNIX;
        memcpy(addr.sun_path, raw, len);
        socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (raw[0] != 0));
        if (connect(fd, (struct sockaddr *)&addr, alen) == 0)
            break;
        if (errno != ECONNREFUSED && errno != ENOENT) {
            int err = errno;
            close(fd);
            errno = err;
            PyErr_SetFromErrno(PyExc_OSError); /* EAGAIN: BlockingIOError */
            goto done;
        }
    }
    struct ucred cred = {0, 0, 0};
    socklen_t clen = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        close(fd);
        goto done;
    }
    int sent = want_uid >= 0 && (long long)cred.uid == want_uid;
    if (sent) {
        for (Py_ssize_t j = 0; j < nfds; j++)
            if (fds[j] == -1)
                fds[j] = fd;
        char control[CMSG_SPACE(sizeof(int) * 16)];
        memset(control, 0, sizeof control);
        struct iovec iov = {hello.buf, (size_t)hello.len};
        struct msghdr msg = {0};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        if (nfds > 0) {
            msg.msg_control = control;
            msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
            struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
            memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
        }
        ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL);
        if (n != (ssize_t)hello.len) {
            if (n >= 0)
                errno = EPIPE;
            PyErr_SetFromErrno(PyExc_OSError);
            close(fd);
            goto done;
        }
        /* The hello went: from here nothing fails. Should dup3 fail, the stream
         * comes back where it is, and the caller's own dup2 says why. */
        if (onto >= 0 && dup3(fd, onto, O_CLOEXEC) == onto) {
            close(fd);
            fd = onto;
        }
    }
    out = Py_BuildValue("(iiIIOn)", fd, (int)cred.pid, (unsigned)cred.uid, (unsigned)cred.gid,
                        sent ? Py_True : Py_False, index);
    if (out == NULL && fd != onto)
        close(fd);
done:
    PyBuffer_Release(&hello);
    return out;
}

static PyMethodDef module_methods[] = {
    {"create_memfd", create_memfd, METH_VARARGS, create_doc},
    {"forks", forks, METH_NOARGS, forks_doc},
    {"take_hello", take_hello, METH_VARARGS, take_hello_doc},
    {"tcp_name", tcp_name, METH_O, tcp_name_doc},
    {"rendezvous", rendezvous, METH_VARARGS, rendezvous_doc},
    {"probe_held", probe_held, METH_NOARGS, probe_held_doc},
    {"socket_method", (PyCFunction)(void (*)(void))socket_method, METH_FASTCALL,
     socket_method_doc},
    {"spin_ready", (PyCFunction)(void (*)(void))spin_ready, METH_FASTCALL, spin_ready_doc},
    {NULL, NULL, 0, NULL},
};

static int ring_exec(PyObject *module) {
    static int atfork_done;
    if (!atfork_done) {
        if (pthread_atfork(NULL, seal_slabs, after_fork_child) != 0) {
            PyErr_SetString(PyExc_RuntimeError, "pthread_atfork failed");
            return -1;
        }
        atfork_done = 1;
    }
    PyObject *type = PyType_FromModuleAndSpec(module, &Channel_spec, NULL);
    if (type == NULL)
        return -1;
    if (PyModule_AddObject(module, "Channel", type) < 0) {
        Py_DECREF(type);
        return -1;
    }
    PyObject *arena_type = PyType_FromModuleAndSpec(module, &Arena_spec, NULL);
    if (arena_type == NULL)
        return -1;
    ArenaType = (PyTypeObject *)arena_type;
    Py_INCREF(arena_type); /* ArenaType's own reference, for the module's life */
    if (PyModule_AddObject(module, "Arena", arena_type) < 0) {
        Py_DECREF(arena_type);
        return -1;
    }
    PyObject *method_type = PyType_FromModuleAndSpec(module, &SocketMethod_spec, NULL);
    if (method_type == NULL)
        return -1;
    if (PyModule_AddObject(module, "SocketMethod", method_type) < 0) {
        Py_DECREF(method_type);
        return -1;
    }
    if (PyModule_AddIntConstant(module, "HEADER_SIZE", HEADER_SIZE) < 0 ||
        PyModule_AddIntConstant(module, "MIN_RING", (long)MIN_RING) < 0 ||
        PyModule_AddIntConstant(module, "MAX_RING", (long)MAX_RING) < 0)
        return -1;
    return 0;
}

static PyModuleDef_Slot ring_slots[] = {
    {Py_mod_exec, (void *)ring_exec},
    {0, NULL},
};

PyDoc_STRVAR(module_doc, "Shared-memory byte rings for loopfast's fast path (see _ring.c).");

static struct PyModuleDef ring_module = {
    PyModuleDef_HEAD_INIT, "loopfast._ring", module_doc, 0, module_methods, ring_slots,
    NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__ring(void) { return PyModuleDef_Init(&ring_module); }
