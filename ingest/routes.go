package ingest

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wagate/wagate/internal/logging"
)

// routes builds the echo instances: the webhook routes with /healthz, and
// the admin routes (/healthz, /readyz, /metrics).
func (s *Server) routes() (web, admin *echo.Echo) {
	newEcho := func() *echo.Echo {
		e := echo.New()
		e.HideBanner = true
		e.HidePort = true
		// echo's own logger writes through the server's: one record per line.
		e.Logger.SetOutput(logging.Writer(s.log, slog.LevelWarn))
		e.StdLogger = slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)
		e.HTTPErrorHandler = s.answerError
		e.Use(s.instrument, s.trace, middleware.RecoverWithConfig(middleware.RecoverConfig{
			DisableStackAll: true,
			LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
				s.log.Error("ingest: panic", "route", c.Path(), "err", err, "stack", string(stack))
				return err
			},
		}))
		return e
	}
	web, admin = newEcho(), newEcho()
	s.providerRoutes(web)
	web.GET(pathHealth, s.health)
	admin.GET(pathHealth, s.health)
	admin.GET(pathReady, s.ready)
	admin.GET(pathMetric, echo.WrapHandler(promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{
		ErrorLog: errorLogger{s},
	})))

	s.routeSet = make(map[string]struct{})
	for _, e := range []*echo.Echo{web, admin} {
		for _, r := range e.Routes() {
			s.routeSet[r.Path] = struct{}{}
		}
	}
	return web, admin
}

// answerError answers a request whose handler returned an error or
// panicked: the status of an *echo.HTTPError (404, 405, …), else 500. The
// error's text is never sent.
func (s *Server) answerError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	code := http.StatusInternalServerError
	if he, ok := errors.AsType[*echo.HTTPError](err); ok {
		code = he.Code
	}
	if code >= http.StatusInternalServerError {
		s.log.Error("ingest: request failed", "route", c.Path(), "err", err)
	}
	if err := c.String(code, http.StatusText(code)); err != nil {
		s.log.Debug("ingest: answer not written", "err", err)
	}
}

// errorLogger gives promhttp the server's logger.
type errorLogger struct{ s *Server }

// Println logs a metrics exposition error.
func (l errorLogger) Println(v ...any) { l.s.log.Error("ingest: metrics", "err", fmt.Sprint(v...)) }
