package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/wagate/wagate/internal/config"
	"github.com/wagate/wagate/internal/connect"
)

// devStateFile is the file, inside the data folder, in which a running
// "wagate dev" records where it serves, so that the other commands (key,
// replay, dlq, streams, send) reach that dev and not another server. It is
// written at every start and kept after a stop, so that a tool run in the
// folder of a dev that has stopped fails, naming it, instead of reading the
// default servers.
const devStateFile = "dev.json"

// devState is what a running "wagate dev" records in devStateFile.
type devState struct {
	PID           int    `json:"pid"`
	NATSURL       string `json:"nats_url"`
	WebhookURL    string `json:"webhook_url"`
	DedupeBackend string `json:"dedupe_backend"` // nats | redis
	KVBucket      string `json:"kv_bucket,omitempty"`
	RedisURL      string `json:"redis_url,omitempty"`
	EventsStream  string `json:"events_stream"`
	DLQStream     string `json:"dlq_stream"`
	Consumer      string `json:"consumer"`
}

// writeDevState records s in dir (see writeWhole).
func writeDevState(dir string, s devState) error {
	b, _ := json.MarshalIndent(s, "", "  ")
	if err := writeWhole(filepath.Join(dir, devStateFile), append(b, '\n')); err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	return nil
}

// writeWhole writes data to path through a temporary file of the same folder
// renamed into place (mode 0600), so that a tool reading path while dev
// writes it, or after dev died in the middle, sees the whole file or the one
// before, never a part.
func writeWhole(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
	}
	return err
}

// readDevState returns the record of the "wagate dev" whose data folder is
// dir; ok is false when no dev has run there.
func readDevState(dir string) (s devState, ok bool, err error) {
	path := filepath.Join(dir, devStateFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, false, nil
	}
	if err != nil {
		return s, false, fmt.Errorf("wagate dev record: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil || s.NATSURL == "" {
		return s, false, fmt.Errorf("wagate dev record %s is not valid (remove it if no wagate dev runs there): %v", path, err)
	}
	return s, true, nil
}

// applyDevState points cfg at the "wagate dev" recorded in its data folder
// when WAGATE_NATS_URL (or --nats-url) is not set: its NATS server, dedupe
// store and streams, except where a variable sets them. It fails loudly when
// the record names a server that does not answer, instead of letting the
// command read another server's state. It returns the record's path, or ""
// when cfg was left as it was.
func applyDevState(cfg *config.Config) (string, error) {
	if _, set := os.LookupEnv(config.Prefix + "NATS_URL"); set {
		return "", nil
	}
	s, ok, err := readDevState(cfg.DataDir)
	if err != nil || !ok {
		return "", err
	}
	path := filepath.Join(cfg.DataDir, devStateFile)
	if err := answers(s.NATSURL); err != nil {
		return "", fmt.Errorf("wagate dev is not running: %s records its NATS server at %s, which does not answer (%v); "+
			"start wagate dev with this data folder, or set %s for another server",
			path, s.NATSURL, err, config.Setting("NATS_URL"))
	}
	cfg.NATSURL = s.NATSURL
	setIfUnset := func(name string, dst *string, v string) {
		if _, set := os.LookupEnv(config.Prefix + name); !set && v != "" {
			*dst = v
		}
	}
	setIfUnset("DEDUPE_BACKEND", &cfg.DedupeBackend, s.DedupeBackend)
	setIfUnset("KV_BUCKET", &cfg.KVBucket, s.KVBucket)
	setIfUnset("REDIS_URL", &cfg.RedisURL, s.RedisURL)
	setIfUnset("EVENTS_STREAM", &cfg.EventsStream, s.EventsStream)
	setIfUnset("DLQ_STREAM", &cfg.DLQStream, s.DLQStream)
	setIfUnset("CONSUMER", &cfg.Consumer, s.Consumer)
	return path, nil
}

// answers dials the host of a nats:// URL, within a second.
func answers(natsURL string) error {
	u, err := url.Parse(natsURL)
	if err != nil {
		return err
	}
	c, err := net.DialTimeout("tcp", u.Host, time.Second)
	if err != nil {
		return errors.Unwrap(err)
	}
	return c.Close()
}

// describeNATS is how dev reports its NATS server: the URL, and why it is
// not the usual port when it moved.
func describeNATS(natsURL string, moved bool, dataDir string) string {
	s := connect.RedactURL(natsURL)
	if moved {
		s += fmt.Sprintf(", not %d: that port is taken; the other commands find this URL in %s,", devNATSPort, filepath.Join(dataDir, devStateFile))
	}
	return s
}
