package edge

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/edgeflux/edge/internal/token"
)

// bearer is the token of an Authorization: Bearer header, or "".
func bearer(r *http.Request) string {
	scheme, got, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(got)
}

// authorize checks the request's bearer token for room (empty: any room, as for /api) and
// grants. On failure it has answered 401 (no or bad token, with the WWW-Authenticate header
// RFC 6750 asks for) or 403 (a valid token that does not cover the request).
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, room string, need token.Grant) (token.Claims, bool) {
	raw := bearer(r)
	claims, err := s.verify(raw)
	if err == nil {
		if room == "" {
			err = claims.Has(need)
		} else {
			err = claims.Allows(room, need)
		}
	}
	switch {
	case err == nil:
		return claims, true
	case errors.Is(err, token.ErrWrongRoom), errors.Is(err, token.ErrForbidden):
		s.metrics.authFailures.Add(1)
		httpError(w, http.StatusForbidden, err.Error())
	default:
		s.metrics.authFailures.Add(1)
		challenge := `Bearer realm="edged"`
		if raw != "" {
			challenge += `, error="invalid_token"`
		}
		w.Header().Set("WWW-Authenticate", challenge)
		msg := ErrUnauthorized.Error() + ": send Authorization: Bearer <token> (mint one with: edgectl token)"
		if raw != "" {
			msg = ErrUnauthorized.Error() + ": " + err.Error()
		}
		httpError(w, http.StatusUnauthorized, msg)
	}
	return token.Claims{}, false
}

func (s *Server) verify(raw string) (token.Claims, error) {
	if raw == "" {
		return token.Claims{}, fmt.Errorf("%w: no token", token.ErrMalformed)
	}
	return token.Verify(s.cfg.Secret, raw, time.Now())
}

// admin wraps an endpoint outside the rooms (/api, /metrics): it needs the admin grant.
func (s *Server) admin(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if _, ok := s.authorize(w, r, "", token.GrantAdmin); ok {
			next(w, r)
		}
	}
}

// pageToken is what a trusted page (opened on the appliance itself) gets: everything in the
// default room, for half a day, under a fresh identity.
func (s *Server) pageToken() string {
	now := time.Now()
	t, err := token.Mint(s.cfg.Secret, token.Claims{
		Identity: "local-" + newID()[:8], Name: "This appliance", Room: s.cfg.DefaultRoom,
		Grants:   token.Grants{Publish: true, Subscribe: true, Admin: true},
		IssuedAt: now, NotBefore: now, ExpiresAt: now.Add(12 * time.Hour),
	})
	if err != nil {
		s.log.Error("minting the page's token", "err", err)
	}
	return t
}

// linkHeaders are the ICE servers as RFC 9725 Link headers.
func (s *Server) linkHeaders(identity string) []string {
	var links []string
	for _, ice := range s.cfg.ICEServers(identity) {
		for _, u := range ice.URLs {
			l := fmt.Sprintf(`<%s>; rel="ice-server"`, u)
			if ice.Username != "" {
				l += fmt.Sprintf(`; username="%s"; credential="%s"; credential-type="password"`, ice.Username, ice.Credential)
			}
			links = append(links, l)
		}
	}
	return links
}

// fromLoopback reports whether the request came from this machine.
func fromLoopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// httpError writes a plain-text error a person can read in a browser or curl.
func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(msg + "\n"))
}
