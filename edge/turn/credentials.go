package turn

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // the TURN REST scheme is HMAC-SHA1 by definition
	"encoding/base64"
	"strconv"
	"strings"
	"time"

	"github.com/pion/webrtc/v4"
)

// Credentials returns time-limited TURN credentials for identity in the TURN REST scheme
// (draft-uberti-behave-turn-rest, coturn's use-auth-secret): the username is
// "<expiry unix seconds>:<identity>" and the password base64(HMAC-SHA1(secret, username)).
// The embedded Server and a coturn with static-auth-secret=secret both accept them until
// now+ttl.
func Credentials(secret []byte, identity string, ttl time.Duration, now time.Time) (username, password string) {
	username = strconv.FormatInt(now.Add(ttl).Unix(), 10) + ":" + identity
	return username, restPassword(secret, username)
}

func restPassword(secret []byte, username string) string {
	mac := hmac.New(sha1.New, secret)
	mac.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// parseUsername splits a REST username into its expiry and identity. A username that is only
// a timestamp (coturn accepts those too) has an empty identity.
func parseUsername(username string) (expiry time.Time, identity string, ok bool) {
	ts, identity, _ := strings.Cut(username, ":")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sec <= 0 {
		return time.Time{}, "", false
	}
	return time.Unix(sec, 0), identity, true
}

// ICEServer is one entry of the room protocol's ice_servers (the shape of the browser's
// RTCIceServer).
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// WebRTC returns the entry as pion's ICEServer, for Go clients.
func (s ICEServer) WebRTC() webrtc.ICEServer {
	return webrtc.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential}
}

// ICEServers returns the ice_servers list for identity: one entry with urls and credentials
// valid for ttl from now. urls are the embedded server's (Server.URLs) or an external
// coturn's (for example "turn:turn.example.com:3478?transport=udp"), secret the matching
// shared secret. Entries whose URLs are all stun: carry no credentials. No urls, no entries.
func ICEServers(urls []string, secret []byte, identity string, ttl time.Duration, now time.Time) []ICEServer {
	var turnURLs, stunURLs []string
	for _, u := range urls {
		if strings.HasPrefix(u, "stun:") || strings.HasPrefix(u, "stuns:") {
			stunURLs = append(stunURLs, u)
		} else {
			turnURLs = append(turnURLs, u)
		}
	}
	var out []ICEServer
	if len(stunURLs) > 0 {
		out = append(out, ICEServer{URLs: stunURLs})
	}
	if len(turnURLs) > 0 {
		user, pass := Credentials(secret, identity, ttl, now)
		out = append(out, ICEServer{URLs: turnURLs, Username: user, Credential: pass})
	}
	return out
}
