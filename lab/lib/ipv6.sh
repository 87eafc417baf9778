# shellcheck shell=bash
# IPv6 in the punch lab: the address plan, sysctls and the routers' stateful IPv6
# firewall. Sourced by punch-lab; see lab/README.md ("IPv6").
#
# A site's TYPE may carry "+v6" (dual-stack: the IPv4 behaviour of TYPE, and a global
# IPv6 prefix behind a stateful firewall), or be "v6-only" (IPv6 alone, same firewall).
# Every IPv6 address is in the documentation prefix 2001:db8::/32, which the core routes.

SRV_IP6=2001:db8:113::10     # srv, on the core <-> srv link 2001:db8:113::/64
SRV_IP6_2=2001:db8:113::11   # srv's second address (RFC 5780)
CORE_SRV6=2001:db8:113::1
SRV_NAME=srv.lab             # resolves to SRV_IP and SRV_IP6 in every host (/etc/netns)

# site_v6 TYPE -> "v4", "dual" or "v6": the families a site's LAN has.
site_family() {
  case $1 in
    v6-only) echo v6 ;;
    *+v6) echo dual ;;
    *) echo v4 ;;
  esac
}

# The IPv4 behaviour of a site TYPE (v6-only sites route no IPv4 to their host; their
# router is an IPv4 firewall).
v4_type() {
  case $1 in
    v6-only) echo firewall ;;
    *) echo "${1%+v6}" ;;
  esac
}

# Addresses of site index IDX (a=0, b=1, c=2): WAN link and LAN prefix.
v6_wan_core() { echo "2001:db8:ff:$1::1"; }
v6_wan_router() { echo "2001:db8:ff:$1::2"; }
v6_lan_prefix() { echo "2001:db8:$(($1 + 1))::"; }

# sysctl_v6 FILE FORWARD(0|1): IPv6 on, addresses without duplicate detection delays,
# no router advertisements, unlimited ICMPv6 errors (hop-limited probes get theirs).
sysctl_v6() {
  local f=$1 fwd=$2
  sed -i '/disable_ipv6/d' "$f"
  cat >>"$f" <<EOT
net.ipv6.conf.all.disable_ipv6 = 0
net.ipv6.conf.default.disable_ipv6 = 0
net.ipv6.conf.all.accept_ra = 0
net.ipv6.conf.default.accept_ra = 0
net.ipv6.conf.all.accept_dad = 0
net.ipv6.conf.default.accept_dad = 0
net.ipv6.conf.all.forwarding = $fwd
net.ipv6.icmp.ratelimit = 0
EOT
}

# The command that turns duplicate address detection off on a node's existing
# interfaces (the links were made before its sysctls): without it, every link-local
# address stays tentative for a second, and the first IPv6 datagrams wait for it.
NO_DAD_CMD='for f in /proc/sys/net/ipv6/conf/*/accept_dad; do echo 0 >"$f"; done'

# router_nft6 FILE V4TYPE BLOCK_UDP: the router's IPv6 rules. No NAT: the LAN's global
# prefix is routed. "open" forwards everything; every other type keeps a stateful
# firewall (ct state established,related accept, else drop from the WAN), as home
# routers and mobile networks do for IPv6.
router_nft6() {
  local f=$1 type=$2 block=$3
  {
    cat <<EOT

# punch-lab router, IPv6: $([[ $type == open ]] && echo "open (routed, no filter)" || echo "stateful firewall")
table ip6 punchlab6 {
  chain input {
    type filter hook input priority filter; policy accept;
    ct state established,related accept
    iifname "lo" accept
    meta l4proto ipv6-icmp accept
    iifname "wan" drop
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
EOT
    if [[ $type != open ]]; then
      echo '    iifname "wan" ct state established,related accept'
      echo '    iifname "wan" drop'
    fi
    echo "  }"
    if [[ $block == 1 ]]; then
      cat <<EOT
  chain blockudp {
    type filter hook forward priority filter - 10; policy accept;
    meta l4proto udp drop
  }
EOT
    elif [[ $block == peers ]]; then
      cat <<EOT
  chain blockudp {
    type filter hook forward priority filter - 10; policy accept;
    meta l4proto udp ip6 daddr != { $SRV_IP6, $SRV_IP6_2 } ip6 saddr != { $SRV_IP6, $SRV_IP6_2 } drop
  }
EOT
    fi
    echo "}"
  } >>"$f"
}

# netns_hosts PREFIX NODE: the server's name for a host (ip netns exec mounts
# /etc/netns/NS/hosts over /etc/hosts), with both of its families.
netns_hosts() {
  local d=/etc/netns/$1-$2
  mkdir -p "$d"
  printf '127.0.0.1 localhost\n::1 localhost\n%s %s\n%s %s\n' \
    "$SRV_IP" "$SRV_NAME" "$SRV_IP6" "$SRV_NAME" >"$d/hosts"
}
