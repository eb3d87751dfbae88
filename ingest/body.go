package ingest

import (
	"bytes"
	"errors"
	"io"
)

// errTooLarge is returned by readBody for a body over the limit.
var errTooLarge = errors.New("ingest: body over the limit")

// readBody reads a request body of at most limit bytes. A declared
// contentLength over limit is refused before anything is read; otherwise at
// most limit+1 bytes are read, and a body that turns out longer than limit
// is refused too. Both refusals return errTooLarge.
func readBody(r io.Reader, contentLength, limit int64) ([]byte, error) {
	if contentLength > limit {
		return nil, errTooLarge
	}
	size := int64(bytes.MinRead)
	if contentLength > 0 {
		size += contentLength
	}
	buf := bytes.NewBuffer(make([]byte, 0, size))
	if _, err := buf.ReadFrom(io.LimitReader(r, limit+1)); err != nil {
		return nil, err
	}
	if int64(buf.Len()) > limit {
		return nil, errTooLarge
	}
	return buf.Bytes(), nil
}
