package ingest

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"testing/iotest"
)

func TestReadBody(t *testing.T) {
	const limit = 10
	cases := []struct {
		name    string
		body    string
		cl      int64
		wantErr error
	}{
		{"empty", "", 0, nil},
		{"under", "12345", 5, nil},
		{"exactly", "1234567890", 10, nil},
		{"exactly, unknown length", "1234567890", -1, nil},
		{"over, unknown length", "12345678901", -1, errTooLarge},
		{"declared over", "1", 11, errTooLarge},
		{"declared short, body long", "123456789012345", 3, errTooLarge},
	}
	for _, c := range cases {
		cr := &countingReader{r: strings.NewReader(c.body)}
		got, err := readBody(cr, c.cl, limit)
		if !errors.Is(err, c.wantErr) {
			t.Errorf("%s: err %v, want %v", c.name, err, c.wantErr)
			continue
		}
		if n := cr.n.Load(); n > limit+1 {
			t.Errorf("%s: read %d bytes, want at most %d", c.name, n, limit+1)
		}
		if c.wantErr == nil && string(got) != c.body {
			t.Errorf("%s: got %q", c.name, got)
		}
		if c.cl > limit && cr.n.Load() != 0 {
			t.Errorf("%s: read %d bytes of a body declared over the limit", c.name, cr.n.Load())
		}
	}
	if _, err := readBody(iotest.ErrReader(errors.New("reset")), -1, limit); err == nil || errors.Is(err, errTooLarge) {
		t.Errorf("read error: got %v", err)
	}
	if _, err := readBody(iotest.HalfReader(bytes.NewReader([]byte("12345"))), -1, limit); err != nil {
		t.Errorf("short reads: %v", err)
	}
}
