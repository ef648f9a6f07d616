package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/edgeflux/edge/provisioning/api"
)

// conn holds the connection flags every fleet command takes.
type conn struct {
	server, ca, tokenFile string
	token                 string
}

func (c *conn) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.server, "server", os.Getenv("EDGECTL_SERVER"), "provisiond URL, https://host:port (env EDGECTL_SERVER)")
	fs.StringVar(&c.ca, "ca", os.Getenv("EDGECTL_CA"), "provisiond's CA certificate, PEM (env EDGECTL_CA)")
	fs.StringVar(&c.tokenFile, "token-file", os.Getenv("EDGECTL_TOKEN_FILE"), "file holding the operator token (env EDGECTL_TOKEN_FILE, or the token in EDGECTL_TOKEN)")
}

// client is an authenticated API client.
type client struct {
	base  string
	token string
	hc    *http.Client
}

func (c *conn) client() (*client, error) {
	if c.server == "" {
		return nil, errors.New("no server: give -server https://host:port or set EDGECTL_SERVER")
	}
	tok := os.Getenv("EDGECTL_TOKEN")
	if c.tokenFile != "" {
		b, err := os.ReadFile(c.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("operator token: %w", err)
		}
		tok = strings.TrimSpace(string(b))
	}
	if tok == "" {
		return nil, errors.New("no operator token: give -token-file FILE or set EDGECTL_TOKEN")
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS13}
	if c.ca != "" {
		pem, err := os.ReadFile(c.ca)
		if err != nil {
			return nil, fmt.Errorf("CA certificate: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA certificate %s holds no PEM certificate", c.ca)
		}
		tlsCfg.RootCAs = pool
	}
	return &client{base: strings.TrimSuffix(c.server, "/"), token: tok,
		hc: &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg}}}, nil
}

// do sends a JSON request and decodes the JSON answer into out (if not nil).
func (c *client) do(method, path string, in, out any) error {
	defer c.hc.CloseIdleConnections()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e api.Error
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s %s: %s", method, path, e.Error)
		}
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: answer: %w", method, path, err)
		}
	}
	return nil
}
