package ingest

import (
	"errors"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/wagate/wagate/messages"
)

// pathCloud is the Cloud API webhook: GET for the verification handshake,
// POST for events.
const pathCloud = "/webhooks/whatsapp"

// cloudRoutes registers the Cloud API routes on e.
func (s *Server) cloudRoutes(e *echo.Echo) {
	e.GET(pathCloud, s.handshake)
	e.POST(pathCloud, s.receiveCloud)
}

// receiveCloud answers a Cloud API webhook POST (see the package doc for the
// answers).
func (s *Server) receiveCloud(c echo.Context) error {
	start := time.Now()
	code, ans := s.receiveCloudBody(c.Request(), start)
	s.metrics.ack.WithLabelValues(codeLabel(code)).Observe(time.Since(start).Seconds())
	if code == http.StatusRequestEntityTooLarge {
		// The rest of the body stays unread: do not reuse the connection.
		c.Response().Header().Set(echo.HeaderConnection, "close")
	}
	return c.JSON(code, ans)
}

// receiveCloudBody reads, checks, parses and accepts one Cloud API body,
// and returns the status code and body of the answer.
func (s *Server) receiveCloudBody(r *http.Request, receivedAt time.Time) (int, Answer) {
	body, err := readBody(r.Body, r.ContentLength, s.cfg.BodyLimit)
	switch {
	case errors.Is(err, errTooLarge):
		s.log.Info("ingest: body over the limit", "content_length", r.ContentLength, "limit", s.cfg.BodyLimit)
		return http.StatusRequestEntityTooLarge, Answer{Error: "body too large"}
	case err != nil:
		s.log.Info("ingest: body unreadable", "err", err)
		return http.StatusBadRequest, Answer{Error: "unreadable body"}
	}
	if len(s.secrets) > 0 && !verifySignature(body, r.Header.Get(HeaderSignature), s.secrets) {
		s.log.Info("ingest: signature refused", "present", r.Header.Get(HeaderSignature) != "", "bytes", len(body))
		return http.StatusUnauthorized, Answer{Error: "invalid signature"}
	}
	events, err := messages.Parse(body, receivedAt.UTC())
	if err != nil {
		if errors.Is(err, messages.ErrNotWebhook) {
			s.log.Info("ingest: not a webhook", "bytes", len(body))
		} else {
			s.log.Error("ingest: body not parsed", "err", err, "bytes", len(body))
		}
		return http.StatusBadRequest, Answer{Error: "body is not a Cloud API webhook"}
	}
	if len(events) == 0 {
		return http.StatusOK, Answer{}
	}
	return s.accept(r.Context(), events)
}
