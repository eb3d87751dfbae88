package ingest

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go"
)

// Paths of the operational routes.
const (
	pathHealth = "/healthz"
	pathReady  = "/readyz"
	pathMetric = "/metrics"
)

// readyTimeout bounds each check of /readyz.
const readyTimeout = 2 * time.Second

// health answers /healthz: the process is alive and serving.
func (s *Server) health(c echo.Context) error {
	return c.String(http.StatusOK, "ok")
}

// readiness is the body of a /readyz answer: for each dependency "ok" or
// "unavailable", never the error's text (it names internal hosts and ports:
// the logs have it).
type readiness struct {
	Store     string `json:"store"`
	JetStream string `json:"jetstream"`
	Draining  bool   `json:"draining,omitempty"`
}

// ready answers /readyz: 200 when the NATS connection is up with JetStream
// answering and the dedupe store answers a ping, else 503 with the reason of
// each failure. Under FailOpen a store that does not answer is reported in
// the body but does not make the ingress unready: it still stores every
// event (design G5), and pulling it out of a load balancer would turn the
// promised degraded 200 into connection errors. It answers 503 from the
// moment Run's context is cancelled, so that load balancers stop sending
// requests during the shutdown.
func (s *Server) ready(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), readyTimeout)
	defer cancel()
	var r readiness
	var wg sync.WaitGroup
	var storeErr, jsErr error
	wg.Go(func() { storeErr = s.store.Ping(ctx) })
	wg.Go(func() { jsErr = s.pingJetStream(ctx) })
	wg.Wait()
	r.Store, r.JetStream = status(storeErr), status(jsErr)
	r.Draining = s.draining.Load()
	code := http.StatusOK
	storeBlocks := r.Store != "ok" && s.cfg.RedisPolicy == FailClosed
	if storeBlocks || r.JetStream != "ok" || r.Draining {
		code = http.StatusServiceUnavailable
		s.log.Info("ingest: not ready", "store", r.Store, "store_err", storeErr, "jetstream", r.JetStream, "jetstream_err", jsErr, "draining", r.Draining)
	}
	return c.JSON(code, r)
}

// pingJetStream checks the NATS connection is up and JetStream answers.
func (s *Server) pingJetStream(ctx context.Context) error {
	if nc := s.js.Conn(); nc != nil && nc.Status() != nats.CONNECTED {
		return fmt.Errorf("nats %s", nc.Status())
	}
	_, err := s.js.AccountInfo(ctx)
	return err
}

// Dependency states in a /readyz answer.
const (
	stateOK          = "ok"
	stateUnavailable = "unavailable"
)

// status is stateOK for a nil error, else stateUnavailable.
func status(err error) string {
	if err == nil {
		return stateOK
	}
	return stateUnavailable
}
