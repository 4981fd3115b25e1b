#!/usr/bin/env python3
"""Send hand-made IPv4 fragments of one ICMP echo request through a raw socket.

    send_frags.py SRC DST IPID MODE

MODE: normal (3 fragments), dup (the first fragment twice), overlap (the first
fragment, then one starting inside it), first (only the first fragment).
Fragment payloads: 1480 + 1480 + 48 bytes (offsets 0, 1480, 2960).
"""
import socket
import struct
import sys


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return (~s) & 0xFFFF


def ip_hdr(src, dst, ipid, off_bytes, mf, plen):
    frag = (off_bytes // 8) | (0x2000 if mf else 0)
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + plen, ipid, frag, 64, 1, 0,
                    socket.inet_aton(src), socket.inet_aton(dst))
    return h[:10] + struct.pack("!H", csum(h)) + h[12:]


def main():
    src, dst, ipid, mode = sys.argv[1], sys.argv[2], int(sys.argv[3], 0), sys.argv[4]
    data = bytes(i & 0xFF for i in range(3000))
    icmp = struct.pack("!BBHHH", 8, 0, 0, 0x4242, 1) + data
    icmp = icmp[:2] + struct.pack("!H", csum(icmp)) + icmp[4:]
    frags = [(0, True, icmp[0:1480]), (1480, True, icmp[1480:2960]), (2960, False, icmp[2960:])]
    if mode == "normal":
        send = frags
    elif mode == "dup":
        send = [frags[0], frags[0], frags[1], frags[2]]
    elif mode == "overlap":
        send = [frags[0], (800, True, icmp[800:2280])]
    elif mode == "first":
        send = [frags[0]]
    else:
        sys.exit("unknown mode " + mode)
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    for off, mf, payload in send:
        s.sendto(ip_hdr(src, dst, ipid, off, mf, len(payload)) + payload, (dst, 0))


main()
