package device

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/edgeflux/edge/provisioning/api"
	"github.com/edgeflux/edge/provisioning/bundle"
	"github.com/edgeflux/edge/provisioning/claim"
)

// HTTPError is an answer of the server other than success.
type HTTPError struct {
	Code    int
	Message string
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("server answered %d: %s", e.Code, e.Message)
}

// Permanent reports whether retrying the same request cannot help (the claim is used up or
// expired, the certificate is revoked, the request is malformed).
func (e *HTTPError) Permanent() bool {
	return e.Code == http.StatusBadRequest || e.Code == http.StatusForbidden || e.Code == http.StatusUnauthorized
}

func httpError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	var e api.Error
	msg := string(bytes.TrimSpace(body))
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	herr := &HTTPError{Code: resp.StatusCode, Message: msg}
	if resp.StatusCode == http.StatusForbidden && msg == "certificate revoked" {
		return fmt.Errorf("%w: %w", ErrRevoked, herr)
	}
	return herr
}

// PinnedTLS trusts exactly the CA whose certificate has SHA-256 fingerprint (hex), as written in
// the claim: the server must present a chain that contains that CA and a leaf it signed for the
// host dialled.
func PinnedTLS(fingerprint string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // replaced by the pin check below
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("server presented no certificate")
			}
			pool := x509.NewCertPool()
			found := false
			for _, c := range cs.PeerCertificates[1:] {
				sum := sha256.Sum256(c.Raw)
				if hex.EncodeToString(sum[:]) == fingerprint {
					pool.AddCert(c)
					found = true
				}
			}
			if !found {
				return errors.New("server's CA does not match the ca_sha256 pinned in the claim")
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: cs.ServerName, Roots: pool})
			return err
		},
	}
}

// Enrol sends the claim token and a CSR for key with hw to the claim's server.
func Enrol(ctx context.Context, c claim.Claim, key *ecdsa.PrivateKey, hw Hardware) (api.EnrolResponse, error) {
	var out api.EnrolResponse
	if c.Token == "" {
		return out, fmt.Errorf("%w: the claim has no token (already used?)", ErrNoClaim)
	}
	csr, err := CSR(key, hw)
	if err != nil {
		return out, err
	}
	body, _ := json.Marshal(api.EnrolRequest{ClaimToken: c.Token, CSR: string(csr)})
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: PinnedTLS(c.CASHA256)}}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.Server+api.PathEnrol, bytes.NewReader(body))
	if err != nil {
		return out, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return out, fmt.Errorf("enrol: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return out, fmt.Errorf("enrol: %w", httpError(resp))
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out); err != nil {
		return out, fmt.Errorf("enrol: answer: %w", err)
	}
	return out, nil
}

// Client talks to the server over mTLS with the device certificate.
type Client struct {
	server string
	hc     *http.Client
	cert   atomic.Pointer[tls.Certificate]
}

// NewClient returns a client for server authenticating with cert (the device certificate and
// key) and trusting only ca.
func NewClient(server string, cert tls.Certificate, ca *x509.CertPool) *Client {
	c := &Client{server: server}
	c.cert.Store(&cert)
	c.hc = &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: ca,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return c.cert.Load(), nil }},
		MaxIdleConnsPerHost: 2,
	}}
	return c
}

// SetCertificate makes new connections use cert (after a renewal) and drops the idle ones.
func (c *Client) SetCertificate(cert tls.Certificate) {
	c.cert.Store(&cert)
	c.hc.CloseIdleConnections()
}

// Renew sends a CSR for the device's key and returns the new certificate (PEM).
func (c *Client) Renew(ctx context.Context, csr []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	body, _ := json.Marshal(api.RenewRequest{CSR: string(csr)})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.server+api.PathRenew, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("renew: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("renew: %w", httpError(resp))
	}
	var out api.RenewResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out); err != nil {
		return nil, fmt.Errorf("renew: answer: %w", err)
	}
	return []byte(out.Certificate), nil
}

// Close drops idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// Bundle long-polls for a bundle newer than after, waiting up to wait on the server. It
// returns nil, nil when none came.
func (c *Client) Bundle(ctx context.Context, after uint64, wait time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, wait+15*time.Second)
	defer cancel()
	u := fmt.Sprintf("%s%s?after=%d&wait=%d", c.server, api.PathBundle, after, int(wait.Seconds()))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		data, err := io.ReadAll(io.LimitReader(resp.Body, bundle.MaxSize+1))
		if err != nil {
			return nil, fmt.Errorf("bundle: %w", err)
		}
		if len(data) == 0 {
			return nil, errors.New("bundle: empty answer")
		}
		return data, nil
	case http.StatusNoContent:
		return nil, nil
	default:
		return nil, fmt.Errorf("bundle: %w", httpError(resp))
	}
}

// Heartbeat reports the device's state.
func (c *Client) Heartbeat(ctx context.Context, hb api.Heartbeat) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	body, _ := json.Marshal(hb)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.server+api.PathHeartbeat, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("heartbeat: %w", httpError(resp))
	}
	return nil
}
