package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
	"github.com/heartbeat-sidecar/heartbeat/rpc/api"
)

// TestReasonsMatchTheServer: the reasons HTTP maps to 413 and 507 are the
// ones the server sends.
func TestReasonsMatchTheServer(t *testing.T) {
	if ReasonTooLarge != api.ReasonTooLarge || ReasonQuotaExceeded != api.ReasonQuotaExceeded {
		t.Fatalf("gateway reasons %q %q, server's %q %q", ReasonTooLarge, ReasonQuotaExceeded, api.ReasonTooLarge, api.ReasonQuotaExceeded)
	}
	for _, tc := range []struct {
		err  error
		want int
	}{
		{tooLarge("x"), http.StatusRequestEntityTooLarge},
		{status.Error(codes.ResourceExhausted, "rate"), http.StatusTooManyRequests},
	} {
		if got := errorBody(tc.err).Code; got != tc.want {
			t.Errorf("%v: %d, want %d", tc.err, got, tc.want)
		}
	}
}

// TestReadBody: the scan of a body as it streams in.
func TestReadBody(t *testing.T) {
	deep := strings.Repeat("[", maxBodyDepth+1) + strings.Repeat("]", maxBodyDepth+1)
	for _, tc := range []struct {
		name, body string
		code       codes.Code
	}{
		{"empty", "", codes.OK},
		{"blank", " \n", codes.OK},
		{"object", `{"a":[1,2,{"b":"c"}],"d":{}}`, codes.OK},
		{"list at the limit", `[1,2,3,4]`, codes.OK},
		{"list over the limit", `[1,2,3,4,5]`, codes.ResourceExhausted},
		{"nested list over the limit", `{"a":{"b":[[],[],[],[],[]]}}`, codes.ResourceExhausted},
		{"object over the limit", `{"a":1,"b":2,"c":3,"d":4,"e":5}`, codes.ResourceExhausted},
		{"four lists of four", `[[1,2,3,4],[1,2,3,4],[1,2,3,4],[1,2,3,4]]`, codes.OK},
		{"nested too deep", deep, codes.InvalidArgument},
		{"bad syntax is left to the decoder", `{"a":}`, codes.OK},
		{"unbalanced", `{}]`, codes.InvalidArgument},
		{"brackets and commas in strings do not count", `["a,b,c,d,e,[,{", "]]]]"]`, codes.OK},
		{"escaped quotes in strings", `["a\",1,2,3,4,5", 2]`, codes.OK},
		{"over the bytes", `{"a":"` + strings.Repeat("x", 200) + `"}`, codes.ResourceExhausted},
		{"trailing bytes are kept for the decoder", `{} x`, codes.OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := readBody(httptest.NewRecorder(), io.NopCloser(strings.NewReader(tc.body)), 100, 4)
			if status.Code(err) != tc.code {
				t.Fatalf("readBody(%q): %v, want %v", tc.body, err, tc.code)
			}
			if err == nil && string(b) != tc.body {
				t.Fatalf("readBody(%q) returned %q", tc.body, b)
			}
		})
	}
	// All values bounded: two items per list, 32*2 values in all; a
	// binary tree of depth 5 has 62.
	tree := func(depth int) string {
		s := "1"
		for range depth {
			s = "[" + s + "," + s + "]"
		}
		return s
	}
	if _, err := readBody(httptest.NewRecorder(), io.NopCloser(strings.NewReader(tree(5))), 1<<20, 2); err != nil {
		t.Fatalf("62 values: %v", err)
	}
	if _, err := readBody(httptest.NewRecorder(), io.NopCloser(strings.NewReader(tree(6))), 1<<20, 2); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("126 values: %v, want ResourceExhausted", err)
	}
}

// emptyItems streams `{"resources":[{},{},...]}` of about size bytes
// without holding it.
type emptyItems struct {
	left  int
	state int // 0 head, 1 items, 2 tail, 3 done
}

func (e *emptyItems) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		switch e.state {
		case 0:
			n += copy(p[n:], `{"resources":[{}`)
			e.state = 1
		case 1:
			if e.left <= 0 || len(p)-n < 3 {
				if e.left <= 0 {
					e.state = 2
					continue
				}
				return n, nil
			}
			n += copy(p[n:], ",{}")
			e.left -= 3
		case 2:
			if len(p)-n < 2 {
				return n, nil
			}
			n += copy(p[n:], "]}")
			e.state = 3
		default:
			return n, io.EOF
		}
	}
	return n, nil
}

// TestHugeBatchBodyHeap: a 32 MiB body of empty items, with the byte limit
// raised to 64 MiB, is refused (413) with the heap staying far below 64 MB:
// the items are counted while the body streams in, nothing is decoded whole.
// (Before: io.ReadAll and protojson took gigabytes; the issue saw 1.29 GB.)
func TestHugeBatchBodyHeap(t *testing.T) {
	rt := Route{Method: http.MethodPost, Pattern: "/v1/resources", RPC: heartbeatpb.Coordinator_RegisterResources_FullMethodName, Body: BodyAll}
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var (
		peak uint64
		stop = make(chan struct{})
		wg   sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc)
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	req := httptest.NewRequest(http.MethodPost, "/v1/resources", &emptyItems{left: 32 << 20})
	msg := &heartbeatpb.RegisterResourcesRequest{}
	err := bind(rt, httptest.NewRecorder(), req, msg, bodyLimits{bytes: 64 << 20, items: DefaultMaxBodyItems})
	close(stop)
	wg.Wait()
	grew := int64(peak) - int64(base.HeapAlloc)
	t.Logf("peak heap %.1f MB (%.1f MB over the start): %v", float64(peak)/1e6, float64(grew)/1e6, err)
	if status.Code(err) != codes.ResourceExhausted || errorBody(err).Code != http.StatusRequestEntityTooLarge {
		t.Errorf("bind: %v, want ResourceExhausted (413)", err)
	}
	if peak >= 64e6 {
		t.Fatalf("peak heap %.1f MB, want under 64 MB", float64(peak)/1e6)
	}
}
