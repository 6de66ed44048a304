// goquery: Grafana's way of asking spanprof for profiles — connectrpc.com/connect with the
// generated querierv1connect client of github.com/grafana/pyroscope/api, default codec
// (application/proto), over an HTTP/1.1-only http.Client.
//
// It reads one call per line on stdin, {"id", "method", "tenant", "request"} where request is
// the method's request message in protobuf JSON, sends it as binary protobuf, and prints one
// line per call on stdout: {"id", "response" (protobuf JSON of the answer) or "error"
// {"code","message"}, and what went over the wire: "proto", "requestContentType",
// "responseContentType", "protocolVersion"}. The test (test_goquery.py) checks the numbers.
// Methods: every QuerierService method by its bare name, settings.v1.SettingsService/<Get|Set|
// Delete>, and a raw procedure path starting with "/" (see clients below).
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"connectrpc.com/connect"
	querierv1 "github.com/grafana/pyroscope/api/gen/proto/go/querier/v1"
	"github.com/grafana/pyroscope/api/gen/proto/go/querier/v1/querierv1connect"
	settingsv1 "github.com/grafana/pyroscope/api/gen/proto/go/settings/v1"
	"github.com/grafana/pyroscope/api/gen/proto/go/settings/v1/settingsv1connect"
	typesv1 "github.com/grafana/pyroscope/api/gen/proto/go/types/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

type call struct {
	ID      string          `json:"id"`
	Method  string          `json:"method"`
	Tenant  string          `json:"tenant,omitempty"`
	Request json.RawMessage `json:"request"`
}

type wire struct {
	Proto               string `json:"proto"`
	RequestContentType  string `json:"requestContentType"`
	ResponseContentType string `json:"responseContentType"`
	ProtocolVersion     string `json:"protocolVersion"`
}

type result struct {
	ID       string          `json:"id"`
	Response json.RawMessage `json:"response,omitempty"`
	Error    *connErr        `json:"error,omitempty"`
	Wire     wire            `json:"wire"`
}

type connErr struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// recorder remembers what the last exchange looked like on the wire (calls are sequential).
type recorder struct {
	next http.RoundTripper
	mu   sync.Mutex
	last wire
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last = wire{RequestContentType: req.Header.Get("Content-Type"),
		ProtocolVersion: req.Header.Get("Connect-Protocol-Version")}
	if resp != nil {
		r.last.Proto = resp.Proto
		r.last.ResponseContentType = resp.Header.Get("Content-Type")
	}
	return resp, err
}

func (r *recorder) take() wire {
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.last
	r.last = wire{}
	return w
}

func unary[Req, Resp any](ctx context.Context, c call, req *Req,
	f func(context.Context, *connect.Request[Req]) (*connect.Response[Resp], error)) (proto.Message, error) {
	if err := protojson.Unmarshal(c.Request, any(req).(proto.Message)); err != nil {
		return nil, fmt.Errorf("request of %s: %w", c.ID, err)
	}
	r := connect.NewRequest(req)
	if c.Tenant != "" {
		r.Header().Set("X-Scope-OrgID", c.Tenant)
	}
	resp, err := f(ctx, r)
	if err != nil {
		return nil, err
	}
	return any(resp.Msg).(proto.Message), nil
}

// clients: every service the test can call. Method names are QuerierService's bare method names
// ("SelectHeatmap"), "settings.v1.SettingsService/<Get|Set|Delete>", or a raw procedure path
// ("/querier.v1.QuerierService/NoSuchThing") sent with a ProfileTypesRequest body and read as
// a ProfileTypesResponse (for methods the api module does not know).
type clients struct {
	q    querierv1connect.QuerierServiceClient
	s    settingsv1connect.SettingsServiceClient
	http connect.HTTPClient
	base string
}

func do(ctx context.Context, cl clients, c call) (proto.Message, error) {
	q := cl.q
	if len(c.Method) > 0 && c.Method[0] == '/' {
		raw := connect.NewClient[querierv1.ProfileTypesRequest, querierv1.ProfileTypesResponse](cl.http, cl.base+c.Method)
		return unary(ctx, c, &querierv1.ProfileTypesRequest{}, raw.CallUnary)
	}
	switch c.Method {
	case "settings.v1.SettingsService/Get":
		return unary(ctx, c, &settingsv1.GetSettingsRequest{}, cl.s.Get)
	case "settings.v1.SettingsService/Set":
		return unary(ctx, c, &settingsv1.SetSettingsRequest{}, cl.s.Set)
	case "settings.v1.SettingsService/Delete":
		return unary(ctx, c, &settingsv1.DeleteSettingsRequest{}, cl.s.Delete)
	case "ProfileTypes":
		return unary(ctx, c, &querierv1.ProfileTypesRequest{}, q.ProfileTypes)
	case "LabelNames":
		return unary(ctx, c, &typesv1.LabelNamesRequest{}, q.LabelNames)
	case "LabelValues":
		return unary(ctx, c, &typesv1.LabelValuesRequest{}, q.LabelValues)
	case "Series":
		return unary(ctx, c, &querierv1.SeriesRequest{}, q.Series)
	case "SelectMergeStacktraces":
		return unary(ctx, c, &querierv1.SelectMergeStacktracesRequest{}, q.SelectMergeStacktraces)
	case "SelectMergeSpanProfile":
		return unary(ctx, c, &querierv1.SelectMergeSpanProfileRequest{}, q.SelectMergeSpanProfile)
	case "SelectMergeProfile":
		return unary(ctx, c, &querierv1.SelectMergeProfileRequest{}, q.SelectMergeProfile)
	case "SelectSeries":
		return unary(ctx, c, &querierv1.SelectSeriesRequest{}, q.SelectSeries)
	case "SelectHeatmap":
		return unary(ctx, c, &querierv1.SelectHeatmapRequest{}, q.SelectHeatmap)
	case "Diff":
		return unary(ctx, c, &querierv1.DiffRequest{}, q.Diff)
	case "GetProfileStats":
		return unary(ctx, c, &typesv1.GetProfileStatsRequest{}, q.GetProfileStats)
	case "AnalyzeQuery":
		return unary(ctx, c, &querierv1.AnalyzeQueryRequest{}, q.AnalyzeQuery)
	}
	return nil, fmt.Errorf("unknown method %q", c.Method)
}

func main() {
	base := flag.String("url", "http://127.0.0.1:4040", "spanprof's HTTP address")
	timeout := flag.Duration("timeout", 20*time.Second, "per call")
	flag.Parse()

	// HTTP/1.1 only, as Grafana's data source proxy talks to Pyroscope: no h2, no h2c.
	tr := &http.Transport{ForceAttemptHTTP2: false, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
	rec := &recorder{next: tr}
	hc := &http.Client{Transport: rec}
	client := clients{q: querierv1connect.NewQuerierServiceClient(hc, *base),
		s: settingsv1connect.NewSettingsServiceClient(hc, *base), http: hc, base: *base}

	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 16<<20)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var c call
		if err := json.Unmarshal(in.Bytes(), &c); err != nil {
			fmt.Fprintf(os.Stderr, "bad input line: %v\n", err)
			os.Exit(2)
		}
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		msg, err := do(ctx, client, c)
		cancel()
		res := result{ID: c.ID, Wire: rec.take()}
		if err != nil {
			var ce *connect.Error
			if !errors.As(err, &ce) {
				fmt.Fprintf(os.Stderr, "%s: %v\n", c.ID, err)
				os.Exit(1)
			}
			res.Error = &connErr{Code: ce.Code().String(), Message: ce.Message()}
		} else {
			b, err := protojson.Marshal(msg)
			if err != nil {
				fmt.Fprintf(os.Stderr, "%s: %v\n", c.ID, err)
				os.Exit(1)
			}
			res.Response = b
		}
		if err := out.Encode(res); err != nil {
			os.Exit(1)
		}
	}
	if err := in.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "stdin: %v\n", err)
		os.Exit(2)
	}
}
