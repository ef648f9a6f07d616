package server

import (
	"fmt"
	"net/http"
	"sort"
	"sync/atomic"
)

// counters are the server's Prometheus counters and gauges.
type counters struct {
	enrolled, enrolRefused, enrolLimited atomic.Int64
	bundles, pushFailed                  atomic.Int64
	revokedRefused                       atomic.Int64
	longPolls                            atomic.Int64
}

// MetricsHandler serves the server's metrics in the Prometheus text format: devices by status
// and online, enrolment outcomes, bundles issued, refused revoked certificates, and the
// long-polls open now. Serve it on a separate, internal listener (provisiond -metrics-listen).
func (s *Server) MetricsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ds, err := s.cfg.Store.Devices(r.Context(), "")
		if err != nil {
			http.Error(w, "registry unavailable", http.StatusServiceUnavailable)
			return
		}
		type key struct {
			status string
			online bool
		}
		n := map[key]int{}
		for i := range ds {
			s.online(&ds[i])
			n[key{ds[i].Status, ds[i].Online}]++
		}
		keys := make([]key, 0, len(n))
		for k := range n {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool {
			return keys[i].status < keys[j].status || keys[i].status == keys[j].status && !keys[i].online
		})
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintln(w, "# HELP provisiond_devices Devices in the registry by status and whether they were seen recently.")
		fmt.Fprintln(w, "# TYPE provisiond_devices gauge")
		for _, k := range keys {
			fmt.Fprintf(w, "provisiond_devices{status=%q,online=\"%t\"} %d\n", k.status, k.online, n[k])
		}
		c := &s.metrics
		fmt.Fprintln(w, "# HELP provisiond_enrolments_total Enrolment attempts by result.")
		fmt.Fprintln(w, "# TYPE provisiond_enrolments_total counter")
		fmt.Fprintf(w, "provisiond_enrolments_total{result=\"enrolled\"} %d\n", c.enrolled.Load())
		fmt.Fprintf(w, "provisiond_enrolments_total{result=\"refused\"} %d\n", c.enrolRefused.Load())
		fmt.Fprintf(w, "provisiond_enrolments_total{result=\"rate_limited\"} %d\n", c.enrolLimited.Load())
		fmt.Fprintln(w, "# HELP provisiond_bundles_total Signed bundles issued, and pushes that made none.")
		fmt.Fprintln(w, "# TYPE provisiond_bundles_total counter")
		fmt.Fprintf(w, "provisiond_bundles_total{result=\"issued\"} %d\n", c.bundles.Load())
		fmt.Fprintf(w, "provisiond_bundles_total{result=\"failed\"} %d\n", c.pushFailed.Load())
		fmt.Fprintln(w, "# HELP provisiond_revoked_requests_total Device requests refused because the certificate is revoked.")
		fmt.Fprintln(w, "# TYPE provisiond_revoked_requests_total counter")
		fmt.Fprintf(w, "provisiond_revoked_requests_total %d\n", c.revokedRefused.Load())
		fmt.Fprintln(w, "# HELP provisiond_long_polls Devices waiting for a bundle now.")
		fmt.Fprintln(w, "# TYPE provisiond_long_polls gauge")
		fmt.Fprintf(w, "provisiond_long_polls %d\n", c.longPolls.Load())
	})
}
