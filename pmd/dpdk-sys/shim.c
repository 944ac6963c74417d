#include <rte_config.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_ethdev.h>
#include <rte_version.h>
#include <rte_ring.h>
#include "shim.h"

uint16_t vs_eth_rx_burst(uint16_t port_id, uint16_t queue_id,
                         struct rte_mbuf **rx_pkts, uint16_t nb_pkts)
{
	return rte_eth_rx_burst(port_id, queue_id, rx_pkts, nb_pkts);
}

uint16_t vs_eth_tx_burst(uint16_t port_id, uint16_t queue_id,
                         struct rte_mbuf **tx_pkts, uint16_t nb_pkts)
{
	return rte_eth_tx_burst(port_id, queue_id, tx_pkts, nb_pkts);
}

struct rte_mbuf *vs_pktmbuf_alloc(struct rte_mempool *mp)
{
	return rte_pktmbuf_alloc(mp);
}

int vs_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs,
                          unsigned count)
{
	return rte_pktmbuf_alloc_bulk(mp, mbufs, count);
}

void vs_pktmbuf_free(struct rte_mbuf *m)
{
	rte_pktmbuf_free(m);
}

void vs_mbuf_refcnt_update(struct rte_mbuf *m, int16_t value)
{
	rte_mbuf_refcnt_update(m, value);
}

uint16_t vs_mbuf_refcnt_read(const struct rte_mbuf *m)
{
	return rte_mbuf_refcnt_read(m);
}

const char *vs_version(void)
{
	return rte_version();
}

int vs_errno(void)
{
	return rte_errno;
}

unsigned vs_lcore_id(void)
{
	return rte_lcore_id();
}

uint64_t vs_const(unsigned which)
{
	switch (which) {
	case 0: return RTE_ETH_RX_OFFLOAD_IPV4_CKSUM;
	case 1: return RTE_ETH_RX_OFFLOAD_UDP_CKSUM;
	case 2: return RTE_ETH_RX_OFFLOAD_TCP_CKSUM;
	case 3: return RTE_ETH_RX_OFFLOAD_OUTER_IPV4_CKSUM;
	case 4: return RTE_ETH_RX_OFFLOAD_OUTER_UDP_CKSUM;
	case 5: return RTE_ETH_RX_OFFLOAD_RSS_HASH;
	case 6: return RTE_ETH_RX_OFFLOAD_SCATTER;
	case 7: return RTE_ETH_RX_OFFLOAD_VLAN_STRIP;
	case 8: return RTE_ETH_TX_OFFLOAD_IPV4_CKSUM;
	case 9: return RTE_ETH_TX_OFFLOAD_UDP_CKSUM;
	case 10: return RTE_ETH_TX_OFFLOAD_TCP_CKSUM;
	case 11: return RTE_ETH_TX_OFFLOAD_OUTER_IPV4_CKSUM;
	case 12: return RTE_ETH_TX_OFFLOAD_OUTER_UDP_CKSUM;
	case 13: return RTE_ETH_TX_OFFLOAD_TCP_TSO;
	case 14: return RTE_ETH_TX_OFFLOAD_VXLAN_TNL_TSO;
	case 15: return RTE_ETH_TX_OFFLOAD_GENEVE_TNL_TSO;
	case 16: return RTE_ETH_TX_OFFLOAD_GRE_TNL_TSO;
	case 17: return RTE_ETH_TX_OFFLOAD_MULTI_SEGS;
	case 18: return RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE;
	case 19: return RTE_ETH_RSS_IP;
	case 20: return RTE_ETH_RSS_TCP;
	case 21: return RTE_ETH_RSS_UDP;
	case 22: return RTE_MBUF_F_RX_RSS_HASH;
	case 23: return RTE_MBUF_F_RX_IP_CKSUM_MASK;
	case 24: return RTE_MBUF_F_RX_IP_CKSUM_BAD;
	case 25: return RTE_MBUF_F_RX_L4_CKSUM_MASK;
	case 26: return RTE_MBUF_F_RX_L4_CKSUM_BAD;
	case 27: return RTE_MBUF_F_RX_VLAN_STRIPPED;
	case 28: return RTE_ETH_TX_OFFLOAD_VLAN_INSERT;
	case 29: return RTE_ETH_TX_OFFLOAD_UDP_TNL_TSO;
	case 30: return RTE_MBUF_F_RX_IP_CKSUM_GOOD;
	case 31: return RTE_MBUF_F_RX_L4_CKSUM_GOOD;
	case 32: return RTE_MBUF_F_TX_OUTER_IP_CKSUM;
	case 33: return RTE_MBUF_F_TX_OUTER_IPV4;
	case 34: return RTE_MBUF_F_TX_OUTER_UDP_CKSUM;
	case 35: return RTE_MBUF_F_TX_TUNNEL_VXLAN;
	case 36: return RTE_MBUF_F_TX_TUNNEL_GENEVE;
	case 37: return RTE_MBUF_F_TX_TUNNEL_GRE;
	case 38: return RTE_MBUF_F_RX_LRO;
	case 39: return RTE_MBUF_F_TX_TCP_SEG;
	case 40: return RTE_MBUF_F_TX_IPV4;
	case 41: return RTE_MBUF_F_TX_IP_CKSUM;
	case 42: return RTE_MBUF_F_TX_TCP_CKSUM;
	case 43: return RTE_MBUF_F_RX_L4_CKSUM_NONE;
	case 44: return RTE_MBUF_F_TX_OUTER_IPV6;
	case 45: return RTE_MBUF_F_TX_IPV6;
	case 46: return RTE_MBUF_F_TX_UDP_CKSUM;
	default: return 0;
	}
}

uint64_t vs_tx_offload(uint64_t il2, uint64_t il3, uint64_t il4, uint64_t tso, uint64_t ol3, uint64_t ol2)
{
	return rte_mbuf_tx_offload(il2, il3, il4, tso, ol3, ol2, 0);
}

size_t vs_mbuf_offset(unsigned which)
{
	switch (which) {
	case 0: return offsetof(struct rte_mbuf, buf_addr);
	case 1: return offsetof(struct rte_mbuf, data_off);
	case 2: return offsetof(struct rte_mbuf, nb_segs);
	case 3: return offsetof(struct rte_mbuf, port);
	case 4: return offsetof(struct rte_mbuf, ol_flags);
	case 5: return offsetof(struct rte_mbuf, packet_type);
	case 6: return offsetof(struct rte_mbuf, pkt_len);
	case 7: return offsetof(struct rte_mbuf, data_len);
	case 8: return offsetof(struct rte_mbuf, vlan_tci);
	case 9: return offsetof(struct rte_mbuf, hash.rss);
	case 10: return offsetof(struct rte_mbuf, buf_len);
	case 11: return offsetof(struct rte_mbuf, next);
	case 12: return offsetof(struct rte_mbuf, tx_offload);
	case 13: return sizeof(struct rte_mbuf);
	case 14: return offsetof(struct rte_mbuf, priv_size);
	default: return (size_t)-1;
	}
}

unsigned vs_ring_mp_enqueue_burst(struct rte_ring *r, void *const *objs, unsigned n)
{
	return rte_ring_mp_enqueue_burst(r, objs, n, NULL);
}

unsigned vs_ring_sc_dequeue_burst(struct rte_ring *r, void **objs, unsigned n)
{
	return rte_ring_sc_dequeue_burst(r, objs, n, NULL);
}

unsigned vs_ring_count(const struct rte_ring *r)
{
	return rte_ring_count(r);
}
