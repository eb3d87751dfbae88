package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/wagate/wagate/ingest"
	"github.com/wagate/wagate/internal/config"
	"github.com/wagate/wagate/internal/connect"
	"github.com/wagate/wagate/internal/forward"
	"github.com/wagate/wagate/internal/logging"
	"github.com/wagate/wagate/internal/redact"
	"github.com/wagate/wagate/internal/wiring"
	"github.com/wagate/wagate/messages"
	"github.com/wagate/wagate/worker"
)

// devSecrets are the credentials wagate dev generates once and keeps in its
// data folder, unless the environment sets them.
type devSecrets struct {
	AppSecret   string `json:"app_secret"`
	VerifyToken string `json:"verify_token"`
}

func newDevCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the whole pipeline in one process: embedded NATS with JetStream, ingress and worker",
		Long: `Run the whole pipeline in one process, with nothing else to install:

  - an embedded NATS server with JetStream, data under WAGATE_DATA_DIR
    (default ./.wagate), kept across restarts;
  - the JetStream key-value dedupe store on it;
  - the ingress on WAGATE_HTTP_ADDR (default :8080), its /readyz and
    /metrics on WAGATE_ADMIN_ADDR (default :8082);
  - a worker running the log handler, or the forward handler when
    WAGATE_FORWARD_URL is set.

The App Secret and verify token come from WAGATE_META_APP_SECRET and
WAGATE_META_VERIFY_TOKEN, else are generated once and kept in
<data dir>/secrets.json. Where it runs (NATS URL, webhook URL, dedupe store)
is recorded in <data dir>/dev.json, which wagate key, replay, dlq, streams and
send follow when WAGATE_NATS_URL is unset. When WAGATE_NATS_URL is set, that server is used
instead of the embedded one; when WAGATE_REDIS_URL is set, Redis is the dedupe
store. Ctrl-C stops it cleanly.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDev(cmd.Context(), cmd.OutOrStdout()) },
	}
	return cmd
}

func runDev(ctx context.Context, out io.Writer) error {
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("dev: data dir: %w", err)
	}
	secrets, err := loadDevSecrets(cfg)
	if err != nil {
		return err
	}
	log := slog.New(logging.Bounded(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelInfo})))
	logging.Std(log)

	natsURL, natsMoved := cfg.NATSURL, false
	// An outside NATS takes the credentials and TLS settings; the embedded
	// one needs none.
	natsAuth, err := connect.NATSAuth(cfg)
	if err != nil {
		return err
	}
	if _, set := os.LookupEnv("WAGATE_NATS_URL"); !set {
		natsAuth = nil
		ns, moved, err := startEmbeddedNATS(filepath.Join(cfg.DataDir, "nats"), embeddedMaxPayload(cfg.BodyLimit))
		if err != nil {
			return err
		}
		natsMoved = moved
		defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
		natsURL = ns.ClientURL()
	}
	switch _, redisSet := os.LookupEnv("WAGATE_REDIS_URL"); {
	case cfg.DedupeBackend == "postgres" || cfg.DedupeBackend == "dynamodb":
		// Asked for by name: keep it.
	case redisSet:
		cfg.DedupeBackend = "redis"
	default:
		cfg.DedupeBackend = "nats"
	}
	if cfg.ForwardURL != "" {
		cfg.Handler = "forward"
	}
	demoHandler := cfg.Handler == ""
	if demoHandler {
		cfg.Handler = "log" // dev's demo default; bin/worker has none
	}

	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	nc, js, err := connect.NATS(cctx, natsURL, "wagate-dev", log, natsAuth...)
	if err != nil {
		return err
	}
	defer nc.Close()
	store, closeStore, err := connect.Store(cctx, cfg, js)
	if err != nil {
		return err
	}
	defer closeStore()
	defer connect.StartCleanup(store, log)()

	reg := prometheus.NewRegistry()
	icfg := wiring.Ingest(cfg, log, reg)
	icfg.AppSecrets = devAppSecrets(cfg, secrets)
	icfg.VerifyToken = secrets.VerifyToken
	icfg.Insecure = false
	srv, err := ingest.New(icfg, store, js)
	if err != nil {
		return err
	}
	h, err := forward.Handler(cfg, log)
	if err != nil {
		return err
	}
	w, err := worker.New(wiring.Worker(cfg, log, reg), js, store, h)
	if err != nil {
		return err
	}
	if err := srv.EnsureStreams(cctx); err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("dev: listen %s: %w", cfg.HTTPAddr, err)
	}
	aln, err := net.Listen("tcp", cfg.AdminAddr)
	if err != nil {
		ln.Close()
		return fmt.Errorf("dev: listen %s: %w", cfg.AdminAddr, err)
	}
	base := "http://" + displayAddr(ln.Addr())
	admin := "http://" + displayAddr(aln.Addr())
	err = writeDevState(cfg.DataDir, devState{
		PID: os.Getpid(), NATSURL: natsURL, WebhookURL: base + "/webhooks/whatsapp",
		DedupeBackend: cfg.DedupeBackend, KVBucket: cfg.KVBucket, RedisURL: devRedisURL(cfg),
		EventsStream: cfg.EventsStream, DLQStream: cfg.DLQStream, Consumer: cfg.Consumer,
	})
	if err != nil {
		_ = ln.Close()
		_ = aln.Close()
		return err
	}
	fmt.Fprintf(out, `wagate dev is running
  webhook       %s/webhooks/whatsapp
  health        %s/healthz   %s/readyz   %s/metrics
  nats          %s (JetStream, data in %s)
  dedupe        %s
  handler       %s
  verify token  %s
  app secret    %s
Send the sample payloads from another terminal:  bin/wagate send
Stop with Ctrl-C.
`, base, admin, admin, admin, describeNATS(natsURL, natsMoved, cfg.DataDir), cfg.DataDir, describeStore(cfg), describeHandler(cfg, demoHandler), secrets.VerifyToken, secrets.AppSecret)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Serve(gctx, ln) })
	g.Go(func() error { return srv.ServeAdmin(gctx, aln) })
	g.Go(func() error { return w.Run(gctx) })
	err = g.Wait()
	fmt.Fprintln(out, "wagate dev stopped")
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

func describeStore(cfg config.Config) string { return storeName(cfg) }

func describeHandler(cfg config.Config, demo bool) string {
	switch {
	case cfg.Handler == "forward":
		return "forward to " + redact.URL(cfg.ForwardURL)
	case demo:
		return "log (one line per processed event; the demo default of wagate dev: set WAGATE_FORWARD_URL to forward to your app)"
	}
	return "log (one line per processed event)"
}

// devRedisURL is the Redis dev's tools must read: its URL when Redis is the
// dedupe store, else "".
func devRedisURL(cfg config.Config) string {
	if cfg.DedupeBackend == "redis" {
		return cfg.RedisURL
	}
	return ""
}

func displayAddr(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok || tcp.IP.IsUnspecified() {
		return fmt.Sprintf("127.0.0.1:%d", tcp.Port)
	}
	return tcp.String()
}

// embeddedMaxPayload is the embedded server's max_payload for a body limit:
// room for the event of any body the ingress accepts (messages.MaxEventSize:
// its item, the strings it copies out of the body and the rest of the body
// in base64 in its frame), so that no valid webhook is answered 503 on every
// retry because its event cannot be stored. At least NATS's default of 1 MB,
// at most 64 MB (NATS's own ceiling: a body limit above about 12.8 MB is not
// fully covered).
func embeddedMaxPayload(bodyLimit int64) int32 {
	const minPayload, maxPayload = 1 << 20, 64 << 20
	return int32(min(max(messages.MaxEventSize(bodyLimit), minPayload), maxPayload))
}

// devNATSPort is the embedded NATS server's port when it is free.
const devNATSPort = 4223

// startEmbeddedNATS starts a NATS server with JetStream storing under dir, on
// loopback port devNATSPort when free, else on any free port (moved is then
// true), accepting messages of up to maxPayload bytes.
func startEmbeddedNATS(dir string, maxPayload int32) (s *server.Server, moved bool, err error) {
	port := devNATSPort
	if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", devNATSPort)); err == nil {
		_ = l.Close()
	} else {
		port, moved = server.RANDOM_PORT, true
	}
	s, err = server.NewServer(&server.Options{
		ServerName: "wagate-dev",
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   dir,
		MaxPayload: maxPayload,
		NoLog:      true,
		NoSigs:     true,
	})
	if err != nil {
		return nil, false, fmt.Errorf("dev: nats server: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(15 * time.Second) {
		s.Shutdown()
		return nil, false, errors.New("dev: embedded nats server not ready after 15s")
	}
	return s, moved, nil
}

// loadDevSecrets returns the App Secret and verify token: from the
// environment when set, else from <data dir>/secrets.json, generated there
// on first use.
func loadDevSecrets(cfg config.Config) (devSecrets, error) {
	path := filepath.Join(cfg.DataDir, "secrets.json")
	var s devSecrets
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, &s); err != nil {
			return s, fmt.Errorf("dev: %s: %w", path, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return s, fmt.Errorf("dev: %w", err)
	}
	changed := false
	if s.AppSecret == "" {
		s.AppSecret, changed = randomHex(16), true
	}
	if s.VerifyToken == "" {
		s.VerifyToken, changed = randomHex(8), true
	}
	if changed {
		b, _ := json.MarshalIndent(s, "", "  ")
		if err := writeWhole(path, append(b, '\n')); err != nil {
			return s, fmt.Errorf("dev: %w", err)
		}
	}
	if secs := cfg.Secrets(); len(secs) > 0 {
		s.AppSecret = secs[0]
	}
	if cfg.MetaVerifyToken != "" {
		s.VerifyToken = cfg.MetaVerifyToken
	}
	return s, nil
}

// devAppSecrets returns the App Secrets the dev ingress accepts: every one of
// WAGATE_META_APP_SECRET when it is set (several during a rotation, as the
// standalone ingress accepts them), else the one in s.
func devAppSecrets(cfg config.Config, s devSecrets) []string {
	if secs := cfg.Secrets(); len(secs) > 0 {
		return secs
	}
	return []string{s.AppSecret}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
