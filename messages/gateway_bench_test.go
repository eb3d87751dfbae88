package messages_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/wagate/wagate/messages"
)

// BenchmarkParseGateway parses one fixture of each gateway provider.
func BenchmarkParseGateway(b *testing.B) {
	for _, c := range []struct {
		file  string
		parse messages.ParseFunc
	}{
		{"wasender_messages_upsert.json", messages.ParseWASender},
		{"waha_message.json", messages.ParseWAHA},
	} {
		body, err := os.ReadFile(filepath.Join("testdata", c.file))
		if err != nil {
			b.Fatal(err)
		}
		at := time.Now()
		b.Run(c.file, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.parse(body, at); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
