/*
 * C shim for DPDK's static-inline fast-path functions. Rust cannot call an
 * inline function, so each one gets a real symbol here. They are compiled
 * with the same flags as DPDK's own code (-O3, DPDK's -march), and each one
 * is called once per burst, not once per packet, except the mbuf alloc/free
 * helpers which are cheap leaf calls.
 */
#ifndef VS_SHIM_H
#define VS_SHIM_H
#include <stdint.h>
#include <stddef.h>
struct rte_mbuf;
struct rte_mempool;

uint16_t vs_eth_rx_burst(uint16_t port_id, uint16_t queue_id,
                         struct rte_mbuf **rx_pkts, uint16_t nb_pkts);
uint16_t vs_eth_tx_burst(uint16_t port_id, uint16_t queue_id,
                         struct rte_mbuf **tx_pkts, uint16_t nb_pkts);
struct rte_mbuf *vs_pktmbuf_alloc(struct rte_mempool *mp);
int vs_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs,
                          unsigned count);
void vs_pktmbuf_free(struct rte_mbuf *m);
void vs_mbuf_refcnt_update(struct rte_mbuf *m, int16_t value);
uint16_t vs_mbuf_refcnt_read(const struct rte_mbuf *m);
int vs_errno(void);
/* rte_version() is static inline. */
const char *vs_version(void);
unsigned vs_lcore_id(void);
/* Offload flag values and layout facts that bindgen cannot evaluate
 * (RTE_BIT64 macros), returned by index; see dpdk_sys::consts. */
uint64_t vs_const(unsigned which);
/* offsetof for the rte_mbuf fields the Rust side reads directly, so a test
 * can prove Rust's view of the layout matches the C compiler's. */
size_t vs_mbuf_offset(unsigned which);
/* The mbuf's tx_offload word for these lengths (rte_mbuf_tx_offload). */
uint64_t vs_tx_offload(uint64_t il2, uint64_t il3, uint64_t il4, uint64_t tso, uint64_t ol3, uint64_t ol2);
struct rte_ring;
/* Multi-producer enqueue and single-consumer dequeue of a burst of
 * pointers (rte_ring's inline burst functions); they return the count. */
unsigned vs_ring_mp_enqueue_burst(struct rte_ring *r, void *const *objs, unsigned n);
unsigned vs_ring_sc_dequeue_burst(struct rte_ring *r, void **objs, unsigned n);
unsigned vs_ring_count(const struct rte_ring *r);
#endif
