package vsock

import (
	"bytes"
	"errors"
	"testing"
)

func encodeHdr(h Hdr) []byte {
	b := make([]byte, HdrSize)
	h.Encode(b)
	return b
}

func TestHdrRoundTrip(t *testing.T) {
	h := Hdr{SrcCID: 3, DstCID: 2, SrcPort: 0x11223344, DstPort: 0x55667788, Len: 99, Type: TypeStream,
		Op: OpShutdown, Flags: ShutdownBoth, BufAlloc: 1 << 18, FwdCnt: 0xfffffff0}
	b := encodeHdr(h)
	// Spot-check the little-endian layout of struct virtio_vsock_hdr.
	if b[0] != 3 || b[8] != 2 || b[16] != 0x44 || b[20] != 0x88 || b[24] != 99 || b[28] != 1 || b[30] != 4 ||
		b[32] != 3 || b[38] != 4 || b[40] != 0xf0 {
		t.Fatalf("layout: % x", b)
	}
	var g Hdr
	g.Decode(b)
	if g != h {
		t.Fatalf("round trip: %+v != %+v", g, h)
	}
}

func TestParsePacket(t *testing.T) {
	good := Hdr{SrcCID: 3, DstCID: 2, SrcPort: 1, DstPort: 2, Type: TypeStream, Op: OpRW}
	payload := []byte("0123456789")
	withLen := func(h Hdr, n uint32) Hdr { h.Len = n; return h }
	hb := encodeHdr(withLen(good, 10))
	for _, tc := range []struct {
		name    string
		bufs    [][]byte
		err     error // nil, ErrShortHeader, or a *PacketError
		reply   bool
		payload []byte
	}{
		{"one descriptor", [][]byte{append(append([]byte{}, hb...), payload...)}, nil, false, payload},
		{"two descriptors", [][]byte{hb, payload}, nil, false, payload},
		{"header split", [][]byte{hb[:5], hb[5:30], hb[30:], payload}, nil, false, payload},
		{"payload split", [][]byte{hb, payload[:3], {}, payload[3:7], payload[7:]}, nil, false, payload},
		{"header and payload share a cut", [][]byte{hb[:40], append(append([]byte{}, hb[40:]...), payload[:4]...), payload[4:]}, nil, false, payload},
		{"trailing bytes ignored", [][]byte{hb, payload, []byte("extra")}, nil, false, payload},
		{"no payload", [][]byte{encodeHdr(good)}, nil, false, nil},
		{"empty chain", nil, ErrShortHeader, false, nil},
		{"43 bytes", [][]byte{hb[:20], hb[20:43]}, ErrShortHeader, false, nil},
		{"payload missing", [][]byte{hb, payload[:9]}, &PacketError{}, true, nil},
		{"len over 64 KiB", [][]byte{encodeHdr(withLen(good, MaxPayload+1)), make([]byte, MaxPayload+1)}, &PacketError{}, true, nil},
		{"len 64 KiB ok", [][]byte{encodeHdr(withLen(good, MaxPayload)), make([]byte, MaxPayload)}, nil, false, make([]byte, MaxPayload)},
		{"bad type", [][]byte{encodeHdr(Hdr{SrcCID: 3, DstCID: 2, Type: 2, Op: OpRequest})}, &PacketError{}, true, nil},
		{"op 0", [][]byte{encodeHdr(Hdr{SrcCID: 3, DstCID: 2, Type: 1, Op: 0})}, &PacketError{}, true, nil},
		{"op 8", [][]byte{encodeHdr(Hdr{SrcCID: 3, DstCID: 2, Type: 1, Op: 8})}, &PacketError{}, true, nil},
		{"src cid", [][]byte{encodeHdr(Hdr{SrcCID: 4, DstCID: 2, Type: 1, Op: 1})}, &PacketError{}, false, nil},
		{"dst cid", [][]byte{encodeHdr(Hdr{SrcCID: 3, DstCID: 3, Type: 1, Op: 1})}, &PacketError{}, false, nil},
		{"dst cid any", [][]byte{encodeHdr(Hdr{SrcCID: 3, DstCID: 0xffffffff, Type: 1, Op: 1})}, &PacketError{}, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParsePacket(tc.bufs, 3)
			switch want := tc.err.(type) {
			case nil:
				if err != nil {
					t.Fatal(err)
				}
				if got := bytes.Join(p.Payload, nil); !bytes.Equal(got, tc.payload) || int(p.Hdr.Len) != len(tc.payload) {
					t.Fatalf("payload %d bytes, len %d; want %d", len(got), p.Hdr.Len, len(tc.payload))
				}
			case *PacketError:
				var pe *PacketError
				if !errors.As(err, &pe) {
					t.Fatalf("err %v, want a PacketError", err)
				}
				if pe.Reply != tc.reply {
					t.Fatalf("Reply %v, want %v (%v)", pe.Reply, tc.reply, err)
				}
			default:
				if !errors.Is(err, want) {
					t.Fatalf("err %v, want %v", err, want)
				}

			}
		})
	}
}

// FuzzPacket feeds arbitrary bytes cut into arbitrary descriptor layouts to the parser.
// cuts gives the lengths of successive descriptors (one byte each, 0 allowed); the rest
// of data forms the last one.
func FuzzPacket(f *testing.F) {
	f.Add(append(encodeHdr(Hdr{SrcCID: 3, DstCID: 2, Type: 1, Op: OpRW, Len: 5}), "hello"...), []byte{})
	f.Add(append(encodeHdr(Hdr{SrcCID: 3, DstCID: 2, Type: 1, Op: OpRW, Len: 5}), "hello"...), []byte{44})
	f.Add(append(encodeHdr(Hdr{SrcCID: 3, DstCID: 2, Type: 1, Op: OpRW, Len: 5}), "hello"...), []byte{10, 0, 30, 6, 2})
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		var bufs [][]byte
		rest := data
		for _, c := range cuts {
			k := min(int(c), len(rest))
			bufs = append(bufs, rest[:k])
			rest = rest[k:]
		}
		bufs = append(bufs, rest)
		p, err := ParsePacket(bufs, 3)
		if len(data) < HdrSize {
			if !errors.Is(err, ErrShortHeader) {
				t.Fatalf("%d bytes: err %v, want ErrShortHeader", len(data), err)
			}
			return
		}
		var h Hdr
		h.Decode(data)
		if err != nil {
			var pe *PacketError
			if !errors.As(err, &pe) || pe.Hdr != h {
				t.Fatalf("err %v for header %v", err, &h)
			}
			valid := h.SrcCID == 3 && h.DstCID == HostCID && h.Type == TypeStream && h.Op >= OpRequest &&
				h.Op <= OpCreditRequest && h.Len <= MaxPayload && int(h.Len) <= len(data)-HdrSize
			if valid {
				t.Fatalf("valid packet %v rejected: %v", &h, err)
			}
			if pe.Reply != (h.SrcCID == 3 && h.DstCID == HostCID) {
				t.Fatalf("Reply %v for %v", pe.Reply, &h)
			}
			return
		}
		if p.Hdr != h {
			t.Fatalf("header %v, want %v", &p.Hdr, &h)
		}
		if h.Len > MaxPayload || h.SrcCID != 3 || h.DstCID != HostCID || h.Type != TypeStream {
			t.Fatalf("invalid packet accepted: %v", &h)
		}
		want := data[HdrSize : HdrSize+int(h.Len)]
		if got := bytes.Join(p.Payload, nil); !bytes.Equal(got, want) {
			t.Fatalf("payload %x, want %x", got, want)
		}
		for _, b := range p.Payload {
			if len(b) == 0 || cap(b) != len(b) {
				t.Fatalf("payload slice len %d cap %d", len(b), cap(b))
			}
		}
	})
}
