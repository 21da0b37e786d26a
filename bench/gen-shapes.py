#!/usr/bin/env python3
"""Writes a keepalived.conf of N blocks of one shape, for finding checks that are not linear
in the size of the file (bench/README.md, "Linear in the size of the file").

Usage: gen-shapes.py SHAPE N > file.conf, then `halb check-config --no-interface-check -f file.conf`
SHAPE: scripts (N instances, each tracking its own vrrp_script and track_file), syncgroups
(N instances, then N/2 sync groups of two), vsgroups (N virtual_server_groups, then a service
for each), vslate (the services first, then their groups), vmac (N instances with their own
use_vmac name), bfd (N bfd_instances), dupvrid (N instances on one VRID), duprs (one service
with N real servers, each given twice).
Addresses are in 10.0.0.0/8 and are never contacted: the file is only parsed.
"""
import sys
shape, n = sys.argv[1], int(sys.argv[2])
o = sys.stdout
o.write("global_defs {\n router_id x\n}\n")
if shape == "scripts":  # N instances each tracking its own script and file
    for i in range(n):
        o.write(f"vrrp_script s{i} {{\n script \"/bin/true\"\n weight 1\n}}\n")
        o.write(f"vrrp_track_file f{i} {{\n file \"/var/lib/halb-weights/f{i}\"\n weight 1\n}}\n")
    for i in range(n):
        o.write(f"vrrp_instance I{i} {{\n interface eth{i//200}\n virtual_router_id {i%200+1}\n priority 100\n"
                f" track_script {{\n  s{i}\n }}\n track_file {{\n  f{i}\n }}\n virtual_ipaddress {{\n  10.{i>>16&255}.{i>>8&255}.{i&255}\n }}\n}}\n")
elif shape == "syncgroups":
    for i in range(n):
        o.write(f"vrrp_instance I{i} {{\n interface eth{i//200}\n virtual_router_id {i%200+1}\n priority 100\n"
                f" virtual_ipaddress {{\n  10.{i>>16&255}.{i>>8&255}.{i&255}\n }}\n}}\n")
    for i in range(0, n, 2):
        o.write(f"vrrp_sync_group G{i} {{\n group {{\n  I{i}\n  I{i+1}\n }}\n}}\n")
elif shape == "dupvrid":
    for i in range(n):
        o.write(f"vrrp_instance I{i} {{\n interface eth0\n virtual_router_id 51\n priority 100\n"
                f" virtual_ipaddress {{\n  10.{i>>16&255}.{i>>8&255}.{i&255}\n }}\n}}\n")
    for i in range(n):
        o.write(f"vrrp_instance I{i} {{\n interface eth{i//200}\n virtual_router_id {i%200+1}\n priority 100\n"
                f" virtual_ipaddress {{\n  10.0.0.1\n }}\n}}\n")
elif shape == "vsgroups":
    for i in range(n):
        o.write(f"virtual_server_group g{i} {{\n 10.{i>>16&255}.{i>>8&255}.{i&255} 80\n}}\n")
    for i in range(n):
        o.write(f"virtual_server group g{i} {{\n lb_algo rr\n lb_kind NAT\n protocol TCP\n real_server 10.200.{i>>8&255}.{i&255} 80 {{\n  weight 1\n }}\n}}\n")
elif shape == "vslate":  # groups defined after the services
    for i in range(n):
        o.write(f"virtual_server group g{i} {{\n lb_algo rr\n lb_kind NAT\n protocol TCP\n real_server 10.200.{i>>8&255}.{i&255} 80 {{\n  weight 1\n }}\n}}\n")
    for i in range(n):
        o.write(f"virtual_server_group g{i} {{\n 10.{i>>16&255}.{i>>8&255}.{i&255} 80\n}}\n")
elif shape == "duprs":  # one service, every real server twice
    o.write("virtual_server 10.0.0.1 80 {\n lb_algo rr\n lb_kind NAT\n protocol TCP\n")
    for i in range(n):
        o.write(f" real_server 10.{i>>16&255}.{i>>8&255}.{i&255} 80 {{\n  weight 1\n }}\n")
        o.write(f" real_server 10.{i>>16&255}.{i>>8&255}.{i&255} 80 {{\n  weight 1\n }}\n")
    o.write("}\n")
elif shape == "vmac":
    for i in range(n):
        o.write(f"vrrp_instance I{i} {{\n interface eth{i//200}\n virtual_router_id {i%200+1}\n priority 100\n use_vmac vm{i}\n"
                f" virtual_ipaddress {{\n  10.{i>>16&255}.{i>>8&255}.{i&255}\n }}\n}}\n")
elif shape == "bfd":
    for i in range(n):
        o.write(f"bfd_instance b{i} {{\n neighbor_ip 10.{i>>16&255}.{i>>8&255}.{i&255}\n}}\n")
