package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// sampleMessages has one message of each type, with every field set.
func sampleMessages() []Message {
	return []Message{
		Hello{Version: Version, InitStart: 1234 * time.Millisecond},
		RunConfig{
			Argv:        []string{"sh", "-c", "echo hi"},
			Env:         []string{"A=1", "B="},
			WorkDir:     "/app",
			User:        "1000:1000",
			Hostname:    "box",
			Outputs:     []string{"/tmp/out.json", "/x"},
			Timeout:     5 * time.Second,
			KillGrace:   time.Second,
			MaxFileSize: 1 << 20,
			AllowPerf:   true,
		},
		Data{Stream: Stdout, Bytes: []byte("out\x00\xff")},
		Data{Stream: Stderr, Bytes: []byte("err")},
		Exit{Code: 42, Signal: 0, TimedOut: true, Cancelled: true, OOMKilled: true, Failure: FailureSetup,
			Message: "no such user", ConfigReceived: 1, Started: 2, Ended: 3, InitMaxRSS: 4 << 20},
		File{Path: "/tmp/out.json", Size: 12, Mode: 0o100644},
		File{Path: "/missing", Err: "no such file or directory"},
		FileData{Bytes: []byte("{\"a\": 1}\n")},
		FileEnd{Sha256: [32]byte{1, 2, 3}, Err: ""},
		FileEnd{Err: "read: i/o error"},
		Done{}, Ack{}, Cancel{},
	}
}

func encode(t testing.TB, m Message) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := NewWriter(&b).Write(m); err != nil {
		t.Fatalf("write %v: %v", m.Type(), err)
	}
	return b.Bytes()
}

// normalize makes empty slices nil so that DeepEqual compares content.
func normalize(m Message) Message {
	switch v := m.(type) {
	case Data:
		v.Bytes = append([]byte(nil), v.Bytes...)
		return v
	case FileData:
		v.Bytes = append([]byte(nil), v.Bytes...)
		return v
	}
	return m
}

func TestRoundTrip(t *testing.T) {
	var stream bytes.Buffer
	w := NewWriter(&stream)
	msgs := sampleMessages()
	for _, m := range msgs {
		if err := w.Write(m); err != nil {
			t.Fatalf("write %v: %v", m.Type(), err)
		}
	}
	r := NewReader(&stream)
	for _, want := range msgs {
		got, err := r.Read()
		if err != nil {
			t.Fatalf("read %v: %v", want.Type(), err)
		}
		if !reflect.DeepEqual(normalize(got), normalize(want)) {
			t.Errorf("round trip %v:\n got %#v\nwant %#v", want.Type(), got, want)
		}
	}
	if _, err := r.Read(); err != io.EOF {
		t.Fatalf("read after last frame: got %v, want io.EOF", err)
	}
}

func TestWriteFrameNoCopy(t *testing.T) {
	var stream bytes.Buffer
	w := NewWriter(&stream)
	frame := make([]byte, HeaderSize+3)
	copy(frame[HeaderSize:], "abc")
	if err := w.WriteFrame(TypeStderr, frame); err != nil {
		t.Fatal(err)
	}
	m, err := NewReader(&stream).Read()
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := m.(Data); !ok || d.Stream != Stderr || string(d.Bytes) != "abc" {
		t.Fatalf("got %#v", m)
	}
	if err := w.WriteFrame(TypeStdout, frame[:2]); err == nil {
		t.Fatal("WriteFrame accepted a frame shorter than its header")
	}
}

// Every strict prefix of a frame is an error, never a panic or a message.
func TestTruncatedFrames(t *testing.T) {
	for _, m := range sampleMessages() {
		full := encode(t, m)
		for n := 0; n < len(full); n++ {
			_, err := NewReader(bytes.NewReader(full[:n])).Read()
			switch {
			case n == 0 && err != io.EOF:
				t.Errorf("%v: empty stream: got %v, want io.EOF", m.Type(), err)
			case n > 0 && !errors.Is(err, io.ErrUnexpectedEOF):
				t.Errorf("%v: %d of %d bytes: got %v, want ErrUnexpectedEOF", m.Type(), n, len(full), err)
			}
		}
	}
}

// frame builds a raw frame with a payload of the caller's making.
func frame(t Type, payload []byte) []byte {
	b := []byte{byte(t), 0, 0, 0, 0}
	binary.LittleEndian.PutUint32(b[1:], uint32(len(payload)))
	return append(b, payload...)
}

func TestMalformed(t *testing.T) {
	u32 := func(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	exitPayload := func(failure byte) []byte {
		b := Exit{}.appendPayload(nil)
		b[4+4+3] = failure
		return b
	}
	tests := []struct {
		name  string
		input []byte
		want  error
	}{
		{"unknown type", frame(99, nil), ErrMalformed},
		{"type zero", frame(0, nil), ErrMalformed},
		{"oversized data frame", []byte{byte(TypeStdout), 1, 0, 0x10, 0}, ErrFrameTooLarge},
		{"oversized hello", frame(TypeHello, make([]byte, maxSmall+1)), ErrFrameTooLarge},
		{"payload on Ack", frame(TypeAck, []byte{0}), ErrFrameTooLarge},
		{"trailing bytes", frame(TypeHello, make([]byte, 11)), ErrMalformed},
		{"short hello", frame(TypeHello, make([]byte, 3)), ErrMalformed},
		{"argv count beyond limit", frame(TypeRunConfig, u32(MaxArgs+1)), ErrMalformed},
		{"argv count beyond bytes left", frame(TypeRunConfig, cat(u32(1000), make([]byte, 100))), ErrMalformed},
		{"argv string beyond limit", frame(TypeRunConfig, cat(u32(1), u32(MaxArgLen+1))), ErrMalformed},
		{"string longer than payload", frame(TypeFile, cat(u32(50), []byte("short"))), ErrMalformed},
		{"bad bool", frame(TypeRunConfig, append(RunConfig{}.appendPayload(nil)[:48], 2)), ErrMalformed},
		{"negative timeout", frame(TypeRunConfig, RunConfig{Timeout: -1}.appendPayload(nil)), ErrMalformed},
		{"negative file size", frame(TypeFile, File{Size: -5}.appendPayload(nil)), ErrMalformed},
		{"unknown failure kind", frame(TypeExit, exitPayload(9)), ErrMalformed},
		{"short sha256", frame(TypeFileEnd, make([]byte, 20)), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReader(bytes.NewReader(tt.input))
			m, err := r.Read()
			if !errors.Is(err, tt.want) {
				t.Fatalf("got message %#v, error %v; want %v", m, err, tt.want)
			}
			if _, again := r.Read(); again == nil || again.Error() != err.Error() {
				t.Fatalf("error not sticky: first %v, then %v", err, again)
			}
		})
	}
}

// The "bad bool" case above depends on the RunConfig layout; check its arithmetic.
func TestRunConfigBoolOffset(t *testing.T) {
	p := RunConfig{AllowPerf: true}.appendPayload(nil)
	if len(p) != 49 || p[48] != 1 {
		t.Fatalf("empty RunConfig payload is %d bytes, last %d; fix the offset in TestMalformed", len(p), p[len(p)-1])
	}
}

func TestWriterRejectsOversize(t *testing.T) {
	w := NewWriter(io.Discard)
	if err := w.Write(Data{Stream: Stdout, Bytes: make([]byte, MaxChunk+1)}); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("oversized chunk: got %v", err)
	}
	if err := w.Write(Data{Stream: Stdout, Bytes: make([]byte, MaxChunk)}); err != nil {
		t.Fatalf("chunk at the limit: %v", err)
	}
	long := strings.Repeat("x", 2*MaxText)
	var b bytes.Buffer
	if err := NewWriter(&b).Write(Exit{Failure: FailureSetup, Message: long}); err != nil {
		t.Fatal(err)
	}
	m, err := NewReader(&b).Read()
	if err != nil {
		t.Fatalf("an over-long message must be truncated by the writer, not rejected by the reader: %v", err)
	}
	if got := len(m.(Exit).Message); got != MaxText {
		t.Fatalf("message length %d, want %d", got, MaxText)
	}
}

// A header promising a large frame followed by a short stream must not allocate the
// promised size.
func TestReaderAllocatesWhatArrives(t *testing.T) {
	in := []byte{byte(TypeStdout), 0, 0, 0x10, 0} // 1 MiB promised
	in = append(in, make([]byte, 100)...)
	r := NewReader(bytes.NewReader(in))
	if _, err := r.Read(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("got %v", err)
	}
	if cap(r.buf) > growStep {
		t.Fatalf("buffer grew to %d bytes for a 105-byte stream", cap(r.buf))
	}
}

func TestCheckHello(t *testing.T) {
	if err := CheckHello(Hello{Version: Version}); err != nil {
		t.Fatal(err)
	}
	var ve *VersionError
	if err := CheckHello(Hello{Version: Version + 1}); !errors.As(err, &ve) || ve.Got != Version+1 {
		t.Fatalf("got %v", err)
	}
}

func TestValidate(t *testing.T) {
	ok := RunConfig{Argv: []string{"true"}, WorkDir: "/", Env: []string{"A=b=c", "E="}, Outputs: []string{"/o"}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	bad := []RunConfig{
		{WorkDir: "/"},
		{Argv: []string{""}, WorkDir: "/"},
		{Argv: []string{"true"}, WorkDir: "app"},
		{Argv: []string{"true"}, WorkDir: "/", Env: []string{"NOVALUE"}},
		{Argv: []string{"true"}, WorkDir: "/", Env: []string{"=v"}},
		{Argv: []string{"true"}, WorkDir: "/", Outputs: []string{"rel/out"}},
		{Argv: []string{"true"}, WorkDir: "/", Hostname: "a/b"},
		{Argv: []string{"true"}, WorkDir: "/", Timeout: -time.Second},
	}
	for i, c := range bad {
		if err := c.Validate(); err == nil {
			t.Errorf("case %d: %+v accepted", i, c)
		}
	}
}

// Two goroutines writing concurrently (the guest's stdout and stderr pumps) interleave
// whole frames; each stream arrives complete and in order.
func TestConcurrentWritersOverSocket(t *testing.T) {
	a, b := socketPair(t)
	w := NewWriter(a)
	const chunks = 500
	var wg sync.WaitGroup
	for _, s := range []Stream{Stdout, Stderr} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range chunks {
				if err := w.Write(Data{Stream: s, Bytes: fmt.Appendf(nil, "%v-%d;", s, i)}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); w.Write(Done{}); a.Close() }()
	got := map[Stream]*strings.Builder{Stdout: {}, Stderr: {}}
	r := NewReader(b)
	for {
		m, err := r.Read()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := m.(Done); ok {
			break
		}
		d := m.(Data)
		got[d.Stream].Write(d.Bytes)
	}
	for _, s := range []Stream{Stdout, Stderr} {
		var want strings.Builder
		for i := range chunks {
			fmt.Fprintf(&want, "%v-%d;", s, i)
		}
		if got[s].String() != want.String() {
			t.Errorf("%v differs", s)
		}
	}
}

func socketPair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	dir := t.TempDir()
	l, err := net.Listen("unix", dir+"/s")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	done := make(chan net.Conn)
	go func() {
		c, err := l.Accept()
		if err != nil {
			t.Error(err)
		}
		done <- c
	}()
	a, err := net.Dial("unix", dir+"/s")
	if err != nil {
		t.Fatal(err)
	}
	b := <-done
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}
