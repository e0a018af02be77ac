// rx.go — building host→guest packets into RX buffers (virtio 1.2 §5.10.6.3): one packet
// per buffer, header first, payload right after it, across however many descriptors the
// driver chained (Linux ≥ 6.2 posts one descriptor of 4 KiB + 44 bytes, older kernels a
// 44-byte header descriptor and a 4 KiB payload descriptor).
//
// Every header we send carries our buf_alloc and current fwd_cnt, so every packet is also
// a credit update; an explicit CREDIT_UPDATE is sent only when nothing else is due.
//
// Owned by the device loop goroutine, like the rest of the muxer.

package vsock

import "time"

// rxBuffer is the writable side of an RX descriptor chain (*virtq.Chain).
type rxBuffer interface {
	WriteAt(p []byte, off int64) (int, error)
	WritableLen() uint64
}

// hasRXWork reports whether some packet waits for an RX buffer. It drops stale entries
// from the head of the ready queue, so that afterwards ready[0] (if any) has work.
func (m *muxer) hasRXWork() bool {
	for len(m.ready) > 0 {
		c := m.ready[0]
		if c.wantsRX() {
			return true
		}
		c.inReady = false
		m.ready[0] = nil
		m.ready = m.ready[1:]
	}
	return len(m.rstQueue) > 0
}

// fillRX writes the next packet into buf and returns the bytes written (0 when buf is too
// small for a header: the buffer is returned empty and the work stays queued).
// Precondition: hasRXWork() returned true.
func (m *muxer) fillRX(buf rxBuffer) uint32 {
	room := buf.WritableLen()
	if room < HdrSize {
		m.warn("rx-small", "vsock: RX buffer smaller than a packet header", "len", room)
		return 0
	}
	var hb [HdrSize]byte
	useRST := len(m.rstQueue) > 0 && (m.rstTurn || len(m.ready) == 0)
	m.rstTurn = !m.rstTurn
	if useRST {
		h := m.rstQueue[0]
		m.rstQueue = m.rstQueue[1:]
		if len(m.rstQueue) == 0 {
			m.rstQueue = nil
		}
		h.Encode(hb[:])
		buf.WriteAt(hb[:], 0)
		return HdrSize
	}
	c := m.ready[0]
	m.ready[0] = nil
	m.ready = m.ready[1:]
	c.inReady = false

	h := Hdr{
		SrcCID: HostCID, DstCID: m.guestCID,
		SrcPort: c.key.local, DstPort: c.key.peer,
		Type: TypeStream, BufAlloc: bufAlloc, FwdCnt: c.fwdCnt,
	}
	var payload []byte
	switch {
	case c.pend&pendRST != 0:
		h.Op = OpRST
	case c.pend&pendRequest != 0:
		h.Op = OpRequest
		c.pend &^= pendRequest
		m.setDeadline(c, time.Now().Add(m.connectTimeout))
	case c.pend&pendResponse != 0:
		h.Op = OpResponse
		c.pend &^= pendResponse
	case c.canSendData() && room > HdrSize:
		ch := &c.chunks[0]
		n := min(len(ch.data)-ch.off, c.peerFree(), int(min(room-HdrSize, MaxPayload)))
		payload = ch.data[ch.off : ch.off+n]
		h.Op, h.Len = OpRW, uint32(n)
		ch.off += n
		c.txCnt += uint32(n)
		c.pendingBytes -= n
		m.stats.bufferedToVM.Add(-int64(n))
		if ch.off == len(ch.data) {
			// Write the payload before recycling its buffer.
			defer putChunkBuf(ch.buf)
			c.chunks[0] = chunk{}
			c.chunks = c.chunks[1:]
			if len(c.chunks) == 0 {
				c.chunks = nil
			}
		}
	case c.wantsShutdown():
		h.Op, h.Flags = OpShutdown, ShutdownSend
		c.shutSent = true
	case c.pend&pendCreditUpdate != 0:
		h.Op = OpCreditUpdate
	case c.pend&pendCreditRequest != 0:
		h.Op = OpCreditRequest
		c.pend &^= pendCreditRequest
		c.creditRequested = true
	default:
		// Only data is due but the buffer has no room beyond the header.
		m.warn("rx-small", "vsock: RX buffer has no room for payload", "len", room)
		m.schedule(c)
		return 0
	}
	c.lastFwdSent = c.fwdCnt
	c.pend &^= pendCreditUpdate
	h.Encode(hb[:])
	buf.WriteAt(hb[:], 0)
	if len(payload) > 0 {
		buf.WriteAt(payload, HdrSize)
	}
	if h.Op == OpRST {
		m.remove(c)
	} else {
		m.schedule(c)
	}
	return HdrSize + h.Len
}
