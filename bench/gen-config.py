#!/usr/bin/env python3
"""Writes a keepalived.conf with one VRRP instance and N real servers behind N/10 virtual servers.

Usage: gen-config.py REAL_SERVERS > file.conf
Addresses are in 10.0.0.0/8 and are never contacted: the file is only parsed.
"""
import sys

def main():
    total = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    per_vs = 10
    out = sys.stdout
    out.write("global_defs {\n    router_id bench\n}\n")
    out.write("vrrp_instance VI_1 {\n    state MASTER\n    interface eth0\n    virtual_router_id 51\n"
              "    priority 100\n    advert_int 1\n    virtual_ipaddress {\n        10.255.255.1\n    }\n}\n")
    for vs in range(total // per_vs):
        port = 1024 + vs
        out.write(f"virtual_server 10.255.255.1 {port} {{\n    delay_loop 6\n    lb_algo wrr\n"
                  f"    lb_kind DR\n    persistence_timeout 50\n    protocol TCP\n")
        for rs in range(per_vs):
            n = vs * per_vs + rs
            ip = f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"
            out.write(f"    real_server {ip} {port} {{\n        weight {1 + rs % 5}\n"
                      f"        TCP_CHECK {{\n            connect_timeout 3\n            retry 3\n"
                      f"            delay_before_retry 3\n        }}\n    }}\n")
        out.write("}\n")

if __name__ == "__main__":
    main()
