// gopush: a Pyroscope push.v1.PusherService/Push server built from Pyroscope's own generated
// Connect handler (github.com/grafana/pyroscope/api, pushv1connect), that records every request
// it accepts as one JSON line: headers that matter (tenant, authorization), each series' labels,
// and each raw profile decoded with github.com/google/pprof/profile (sample values, leaf-first
// function names, string and numeric labels). The spanprof e2e tests point the Pyroscope backend
// at it and compare what arrived with what they sent.
//
// Flags: -addr (listen address; port 0 picks one), -out (JSON lines file, appended),
// -port-file (written with the bound port once listening), -fail N (answer the first N requests
// with -fail-code), -tls-cert/-tls-key (serve HTTPS), -basic-auth user:password (answer
// unauthenticated, HTTP 401, to a request without exactly these credentials, as a Pyroscope
// behind an authenticating gateway does; such requests are not recorded).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"connectrpc.com/connect"
	"github.com/google/pprof/profile"
	pushv1 "github.com/grafana/pyroscope/api/gen/proto/go/push/v1"
	"github.com/grafana/pyroscope/api/gen/proto/go/push/v1/pushv1connect"
)

type sample struct {
	Stack     []string           `json:"stack"` // leaf first
	Values    []int64            `json:"values"`
	Labels    map[string]string  `json:"labels"`
	NumLabels map[string][]int64 `json:"num_labels"`
}

type rawProfile struct {
	ID          string   `json:"id"`
	SampleTypes []string `json:"sample_types"` // "type:unit"
	PeriodType  string   `json:"period_type"`
	Period      int64    `json:"period"`
	TimeNanos   int64    `json:"time_nanos"`
	Samples     []sample `json:"samples"`
}

type series struct {
	Labels   map[string]string `json:"labels"`
	Profiles []rawProfile      `json:"profiles"`
}

type record struct {
	Tenant        string   `json:"tenant"`
	Authorization string   `json:"authorization"`
	ContentType   string   `json:"content_type"`
	Series        []series `json:"series"`
}

type server struct {
	basicUser, basicPass string // "" = no check
	mu                   sync.Mutex
	out                  *os.File
	failLeft             atomic.Int64
	failCode             connect.Code
}

func decode(raw []byte) (rawProfile, error) {
	var rp rawProfile
	p, err := profile.ParseData(raw)
	if err != nil {
		return rp, err
	}
	if err := p.CheckValid(); err != nil {
		return rp, err
	}
	for _, st := range p.SampleType {
		rp.SampleTypes = append(rp.SampleTypes, st.Type+":"+st.Unit)
	}
	if p.PeriodType != nil {
		rp.PeriodType = p.PeriodType.Type + ":" + p.PeriodType.Unit
	}
	rp.Period = p.Period
	rp.TimeNanos = p.TimeNanos
	for _, s := range p.Sample {
		o := sample{Values: s.Value, Labels: map[string]string{}, NumLabels: map[string][]int64{}}
		for _, loc := range s.Location {
			// pprof lists inlined frames innermost first within a location.
			for _, ln := range loc.Line {
				name := ""
				if ln.Function != nil {
					name = ln.Function.Name
				}
				o.Stack = append(o.Stack, name)
			}
			if len(loc.Line) == 0 {
				o.Stack = append(o.Stack, fmt.Sprintf("0x%x", loc.Address))
			}
		}
		for k, v := range s.Label {
			if len(v) != 1 {
				return rp, fmt.Errorf("label %q has %d values", k, len(v))
			}
			o.Labels[k] = v[0]
		}
		for k, v := range s.NumLabel {
			o.NumLabels[k] = v
		}
		rp.Samples = append(rp.Samples, o)
	}
	return rp, nil
}

func (s *server) Push(ctx context.Context, req *connect.Request[pushv1.PushRequest]) (*connect.Response[pushv1.PushResponse], error) {
	if s.basicUser != "" {
		// net/http's own parser of the Authorization header.
		u, p, ok := (&http.Request{Header: req.Header()}).BasicAuth()
		if !ok || u != s.basicUser || p != s.basicPass {
			return nil, connect.NewError(connect.CodeUnauthenticated, errors.New("gopush: bad credentials"))
		}
	}
	if s.failLeft.Add(-1) >= 0 {
		return nil, connect.NewError(s.failCode, errors.New("gopush: failing on purpose"))
	}
	rec := record{
		Tenant:        req.Header().Get("X-Scope-OrgID"),
		Authorization: req.Header().Get("Authorization"),
		ContentType:   req.Header().Get("Content-Type"),
	}
	for _, ser := range req.Msg.Series {
		o := series{Labels: map[string]string{}}
		for _, l := range ser.Labels {
			if _, dup := o.Labels[l.Name]; dup {
				return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("duplicate label %q", l.Name))
			}
			o.Labels[l.Name] = l.Value
		}
		for _, raw := range ser.Samples {
			rp, err := decode(raw.RawProfile)
			if err != nil {
				return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("raw profile: %w", err))
			}
			rp.ID = raw.ID
			o.Profiles = append(o.Profiles, rp)
		}
		rec.Series = append(rec.Series, o)
	}
	line, err := json.Marshal(rec)
	if err != nil {
		return nil, connect.NewError(connect.CodeInternal, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.out.Write(append(line, '\n')); err != nil {
		return nil, connect.NewError(connect.CodeInternal, err)
	}
	return connect.NewResponse(&pushv1.PushResponse{}), nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	out := flag.String("out", "received.jsonl", "JSON lines file (appended)")
	portFile := flag.String("port-file", "", "write the bound port here once listening")
	fail := flag.Int64("fail", 0, "answer the first N requests with -fail-code")
	failCode := flag.String("fail-code", "unavailable", "Connect code for -fail")
	cert := flag.String("tls-cert", "", "PEM certificate (serve HTTPS)")
	key := flag.String("tls-key", "", "PEM key for -tls-cert")
	basic := flag.String("basic-auth", "", "user:password every request must carry (basic auth)")
	flag.Parse()

	f, err := os.OpenFile(*out, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		log.Fatal(err)
	}
	s := &server{out: f}
	if *basic != "" {
		u, p, ok := strings.Cut(*basic, ":")
		if !ok {
			log.Fatal("-basic-auth wants user:password")
		}
		s.basicUser, s.basicPass = u, p
	}
	s.failLeft.Store(*fail)
	codes := map[string]connect.Code{
		"unavailable":        connect.CodeUnavailable,
		"resource_exhausted": connect.CodeResourceExhausted,
		"invalid_argument":   connect.CodeInvalidArgument,
		"internal":           connect.CodeInternal,
	}
	c, ok := codes[*failCode]
	if !ok {
		log.Fatalf("unknown -fail-code %q", *failCode)
	}
	s.failCode = c

	mux := http.NewServeMux()
	path, handler := pushv1connect.NewPusherServiceHandler(s)
	mux.Handle(path, handler)
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if *portFile != "" {
		tmp := *portFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(fmt.Sprint(port)), 0o644); err != nil {
			log.Fatal(err)
		}
		if err := os.Rename(tmp, *portFile); err != nil {
			log.Fatal(err)
		}
	}
	log.Printf("gopush listening on %s", ln.Addr())
	srv := &http.Server{Handler: mux}
	if *cert != "" {
		err = srv.ServeTLS(ln, *cert, *key)
	} else {
		err = srv.Serve(ln)
	}
	log.Fatal(err)
}
