package guest

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/vmbench/runner/protocol"
)

// SendOutputs sends each requested file in order: a File header with size and mode and
// then its content in FileData frames and a FileEnd with the sha256, or a File with Err set
// when the file is missing, not a regular file, or larger than maxSize. buf is a scratch
// frame buffer of at least HeaderSize+1 bytes. The error is for the stream breaking only.
func SendOutputs(w *protocol.Writer, paths []string, maxSize int64, buf []byte) error {
	if maxSize <= 0 {
		maxSize = protocol.MaxFileSizeDefault
	}
	for _, p := range paths {
		if err := sendFile(w, p, maxSize, buf); err != nil {
			return err
		}
	}
	return nil
}

func sendFile(w *protocol.Writer, path string, maxSize int64, buf []byte) error {
	// O_NONBLOCK: opening a FIFO must not hang the init; it is refused below anyway.
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return w.Write(protocol.File{Path: path, Err: describe(err)})
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return w.Write(protocol.File{Path: path, Err: describe(err)})
	}
	mode := fileMode(st)
	switch {
	case !st.Mode().IsRegular():
		return w.Write(protocol.File{Path: path, Mode: mode, Err: fmt.Sprintf("not a regular file (%v)", st.Mode().Type())})
	case st.Size() > maxSize:
		return w.Write(protocol.File{Path: path, Size: st.Size(), Mode: mode,
			Err: fmt.Sprintf("file is %d bytes, larger than the limit of %d", st.Size(), maxSize)})
	}
	size := st.Size()
	if err := w.Write(protocol.File{Path: path, Size: size, Mode: mode}); err != nil {
		return err
	}
	h := sha256.New()
	chunk := buf[protocol.HeaderSize:min(len(buf), protocol.HeaderSize+protocol.MaxChunk)]
	var sent int64
	for sent < size {
		want := min(int64(len(chunk)), size-sent)
		n, err := io.ReadFull(f, chunk[:want])
		if n > 0 {
			h.Write(chunk[:n])
			if werr := w.WriteFrame(protocol.TypeFileData, buf[:protocol.HeaderSize+n]); werr != nil {
				return werr
			}
			sent += int64(n)
		}
		if err != nil {
			msg := describe(err)
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				msg = fmt.Sprintf("file shrank from %d to %d bytes while being read", size, sent)
			}
			return w.Write(protocol.FileEnd{Err: msg})
		}
	}
	var end protocol.FileEnd
	h.Sum(end.Sha256[:0])
	return w.Write(end)
}

// fileMode returns st_mode as the kernel reports it.
func fileMode(st os.FileInfo) uint32 {
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return sys.Mode
	}
	return uint32(st.Mode().Perm())
}

// describe turns an error about a file into a short text for the host.
func describe(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Op + ": " + pe.Err.Error()
	}
	return err.Error()
}
