package vip

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
)

func TestGARPFrameBytes(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0x42, 0xc6, 0x12, 0x00, 0x0b}
	ip := netip.MustParseAddr("198.18.0.100")
	pad := make([]byte, 18)

	tests := []struct {
		op   arpOp
		want []byte
	}{
		{arpRequest, concat(
			[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, // destination: broadcast
			[]byte{0x02, 0x42, 0xc6, 0x12, 0x00, 0x0b}, // source: interface MAC
			[]byte{0x08, 0x06},                         // EtherType ARP
			[]byte{0x00, 0x01},                         // hardware type Ethernet
			[]byte{0x08, 0x00},                         // protocol type IPv4
			[]byte{0x06, 0x04},                         // address lengths
			[]byte{0x00, 0x01},                         // op: request
			[]byte{0x02, 0x42, 0xc6, 0x12, 0x00, 0x0b}, // sender MAC
			[]byte{198, 18, 0, 100},                    // sender IP = VIP
			[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, // target MAC, as keepalived
			[]byte{198, 18, 0, 100},                    // target IP = VIP
			pad,
		)},
		{arpReply, concat(
			[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
			[]byte{0x02, 0x42, 0xc6, 0x12, 0x00, 0x0b},
			[]byte{0x08, 0x06},
			[]byte{0x00, 0x01},
			[]byte{0x08, 0x00},
			[]byte{0x06, 0x04},
			[]byte{0x00, 0x02}, // op: reply
			[]byte{0x02, 0x42, 0xc6, 0x12, 0x00, 0x0b},
			[]byte{198, 18, 0, 100},
			[]byte{0x02, 0x42, 0xc6, 0x12, 0x00, 0x0b}, // target MAC = sender MAC: Linux requires it of a gratuitous reply
			[]byte{198, 18, 0, 100},
			pad,
		)},
	}
	for _, tt := range tests {
		t.Run(tt.op.String(), func(t *testing.T) {
			got := garpFrame(tt.op, mac, ip)
			if len(got) != 60 {
				t.Fatalf("frame is %d bytes, want 60 (42 padded to the Ethernet minimum)", len(got))
			}
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("frame\n got % x\nwant % x", got, tt.want)
			}
		})
	}
}

func TestHtons(t *testing.T) {
	var b [2]byte
	binary.NativeEndian.PutUint16(b[:], htons(0x0806))
	if b != [2]byte{0x08, 0x06} {
		t.Fatalf("htons(0x0806) is laid out in memory as % x, want 08 06", b)
	}
}

func TestARPOpString(t *testing.T) {
	for op, want := range map[arpOp]string{arpRequest: "request", arpReply: "reply", 7: "arpOp(7)"} {
		if got := op.String(); got != want {
			t.Errorf("arpOp(%d).String() = %q, want %q", uint16(op), got, want)
		}
	}
}

func concat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
