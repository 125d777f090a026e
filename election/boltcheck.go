package election

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"time"
)

// The on-disk layout of a bbolt file (go.etcd.io/bbolt, file format version
// 2), as far as checkBoltFile needs it.
const (
	boltPageHeader   = 16 // id u64, flags u16, count u16, overflow u32
	boltElemSize     = 16 // branch: pos, ksize u32, pgid u64; leaf: flags, pos, ksize, vsize u32
	boltBucketHeader = 16 // root pgid u64, sequence u64
	boltBranchFlag   = 0x01
	boltLeafFlag     = 0x02
	boltMetaFlag     = 0x04
	boltFreelistFlag = 0x10
	boltBucketLeaf   = 0x01
	boltMagic        = 0xED0CDAED
	boltVersion      = 2
	boltNoFreelist   = ^uint64(0)
	boltMaxDepth     = 64
)

// errLocked: another open file holds bbolt's lock on the file.
var errLocked = errors.New("locked")

// boltMeta is the part of a meta page checkBoltFile reads.
type boltMeta struct {
	pageSize uint32
	root     uint64 // the root bucket's root page
	freelist uint64
	pgid     uint64 // high-water mark: pages below it are in use or free
	txid     uint64
}

// checkBoltFile checks the structure of a bolt file before bbolt maps it:
// the meta pages (magic, version, checksum), the freelist page and every
// page reachable from the root bucket (its type, and that every element,
// key, value and child page lies inside the file). bbolt trusts these
// (it reads them through unsafe pointers into the mapped file), so a
// corrupt page makes it panic, fault, or with -race end the process in a
// checkptr throw that no recover catches. Values (the log entries) are not
// checked here: verifyBolt decodes them through raft-boltdb afterwards.
//
// It holds a shared lock on the file while it reads (a node running on the
// same data dir holds bbolt's exclusive one): errLocked after
// boltOpenTimeout.
func checkBoltFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	deadline := time.Now().Add(boltOpenTimeout)
	for {
		ok, err := tryShared(f)
		if err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			return errLocked
		}
		time.Sleep(50 * time.Millisecond)
	}
	st, err := f.Stat()
	if err != nil {
		return err
	}
	c := &boltChecker{f: f, size: st.Size(), seen: map[uint64]bool{}}
	return c.check()
}

type boltChecker struct {
	f    *os.File
	size int64
	ps   int64
	meta boltMeta
	seen map[uint64]bool
}

func (c *boltChecker) check() error {
	var metas []boltMeta
	var errs []error
	for i := 0; i < 2; i++ {
		m, err := c.readMeta(i, metas)
		if err != nil {
			errs = append(errs, fmt.Errorf("meta page %d: %w", i, err))
			continue
		}
		metas = append(metas, m)
	}
	if len(metas) == 0 {
		return fmt.Errorf("%v; %v", errs[0], errs[1])
	}
	c.meta = metas[0]
	if len(metas) == 2 && metas[1].txid > metas[0].txid {
		c.meta = metas[1]
	}
	c.ps = int64(c.meta.pageSize)
	if int64(c.meta.pgid) > c.size/c.ps {
		return fmt.Errorf("file is %d bytes but its meta page counts %d pages of %d bytes: truncated", c.size, c.meta.pgid, c.ps)
	}
	if c.meta.freelist != boltNoFreelist {
		if err := c.checkFreelist(); err != nil {
			return err
		}
	}
	return c.checkTree(c.meta.root, 0)
}

// readMeta reads meta page i. Page 0 is at offset 0; page 1 at the page
// size page 0 gives, or (page 0 being bad) the one the other candidates
// give, else 4096.
func (c *boltChecker) readMeta(i int, have []boltMeta) (boltMeta, error) {
	var off int64
	if i == 1 {
		off = 4096
		if len(have) > 0 {
			off = int64(have[0].pageSize)
		} else if ps := c.peekPageSize(); ps > 0 {
			off = ps
		}
	}
	b := make([]byte, boltPageHeader+64)
	if _, err := c.f.ReadAt(b, off); err != nil {
		if errors.Is(err, io.EOF) {
			return boltMeta{}, fmt.Errorf("file too short (%d bytes)", c.size)
		}
		return boltMeta{}, err
	}
	if flags := binary.LittleEndian.Uint16(b[8:]); flags != boltMetaFlag {
		return boltMeta{}, fmt.Errorf("not a meta page (flags %#x)", flags)
	}
	m := b[boltPageHeader:]
	if binary.LittleEndian.Uint32(m[0:]) != boltMagic {
		return boltMeta{}, errors.New("bad magic number")
	}
	if v := binary.LittleEndian.Uint32(m[4:]); v != boltVersion {
		return boltMeta{}, fmt.Errorf("format version %d, want %d", v, boltVersion)
	}
	h := fnv.New64a()
	_, _ = h.Write(m[:56])
	if binary.LittleEndian.Uint64(m[56:]) != h.Sum64() {
		return boltMeta{}, errors.New("checksum mismatch")
	}
	meta := boltMeta{
		pageSize: binary.LittleEndian.Uint32(m[8:]),
		root:     binary.LittleEndian.Uint64(m[16:]),
		freelist: binary.LittleEndian.Uint64(m[32:]),
		pgid:     binary.LittleEndian.Uint64(m[40:]),
		txid:     binary.LittleEndian.Uint64(m[48:]),
	}
	if meta.pageSize < 512 || meta.pageSize > 1<<20 || meta.pageSize&(meta.pageSize-1) != 0 {
		return boltMeta{}, fmt.Errorf("page size %d", meta.pageSize)
	}
	return meta, nil
}

// peekPageSize is page 0's page size field, unchecked; 0 if unreadable.
func (c *boltChecker) peekPageSize() int64 {
	b := make([]byte, 4)
	if _, err := c.f.ReadAt(b, boltPageHeader+8); err != nil {
		return 0
	}
	ps := int64(binary.LittleEndian.Uint32(b))
	if ps < 512 || ps > 1<<20 || ps&(ps-1) != 0 {
		return 0
	}
	return ps
}

// page reads page id with its overflow pages, checking that they lie below
// the high-water mark and inside the file.
func (c *boltChecker) page(id uint64) ([]byte, error) {
	if id < 2 || id >= c.meta.pgid {
		return nil, fmt.Errorf("page %d outside 2..%d", id, c.meta.pgid-1)
	}
	head := make([]byte, boltPageHeader)
	if _, err := c.f.ReadAt(head, int64(id)*c.ps); err != nil {
		return nil, fmt.Errorf("page %d: %w", id, err)
	}
	overflow := uint64(binary.LittleEndian.Uint32(head[12:]))
	if id+overflow >= c.meta.pgid {
		return nil, fmt.Errorf("page %d: %d overflow pages run past the last page %d", id, overflow, c.meta.pgid-1)
	}
	b := make([]byte, int64(overflow+1)*c.ps)
	if _, err := c.f.ReadAt(b, int64(id)*c.ps); err != nil {
		return nil, fmt.Errorf("page %d: %w", id, err)
	}
	return b, nil
}

func (c *boltChecker) checkFreelist() error {
	p, err := c.page(c.meta.freelist)
	if err != nil {
		return fmt.Errorf("freelist: %w", err)
	}
	if flags := binary.LittleEndian.Uint16(p[8:]); flags != boltFreelistFlag {
		return fmt.Errorf("freelist page %d: not a freelist page (flags %#x)", c.meta.freelist, flags)
	}
	count, start := uint64(binary.LittleEndian.Uint16(p[10:])), uint64(boltPageHeader)
	if count == 0xFFFF {
		count, start = binary.LittleEndian.Uint64(p[boltPageHeader:]), boltPageHeader+8
	}
	if count > (uint64(len(p))-start)/8 {
		return fmt.Errorf("freelist page %d: %d ids do not fit in %d bytes", c.meta.freelist, count, len(p))
	}
	for i := uint64(0); i < count; i++ {
		if id := binary.LittleEndian.Uint64(p[start+8*i:]); id < 2 || id >= c.meta.pgid {
			return fmt.Errorf("freelist page %d: free page %d outside 2..%d", c.meta.freelist, id, c.meta.pgid-1)
		}
	}
	return nil
}

// checkTree checks the pages of a bucket (or sub-tree) rooted at page id.
func (c *boltChecker) checkTree(id uint64, depth int) error {
	if depth > boltMaxDepth {
		return fmt.Errorf("page %d: tree deeper than %d", id, boltMaxDepth)
	}
	if c.seen[id] {
		return fmt.Errorf("page %d: reached twice", id)
	}
	c.seen[id] = true
	p, err := c.page(id)
	if err != nil {
		return err
	}
	return c.checkPage(id, p, depth)
}

// checkPage checks the elements of page p (id 0: an inline bucket's page).
func (c *boltChecker) checkPage(id uint64, p []byte, depth int) error {
	flags, count := binary.LittleEndian.Uint16(p[8:]), int(binary.LittleEndian.Uint16(p[10:]))
	if flags != boltBranchFlag && flags != boltLeafFlag {
		return fmt.Errorf("page %d: neither branch nor leaf (flags %#x)", id, flags)
	}
	if boltPageHeader+count*boltElemSize > len(p) {
		return fmt.Errorf("page %d: %d elements do not fit in %d bytes", id, count, len(p))
	}
	for i := 0; i < count; i++ {
		at := boltPageHeader + i*boltElemSize
		e := p[at : at+boltElemSize]
		if flags == boltBranchFlag {
			pos, ksize := uint64(binary.LittleEndian.Uint32(e[0:])), uint64(binary.LittleEndian.Uint32(e[4:]))
			if uint64(at)+pos+ksize > uint64(len(p)) {
				return fmt.Errorf("page %d: branch element %d's key lies outside the page", id, i)
			}
			if err := c.checkTree(binary.LittleEndian.Uint64(e[8:]), depth+1); err != nil {
				return err
			}
			continue
		}
		eflags := binary.LittleEndian.Uint32(e[0:])
		pos, ksize, vsize := uint64(binary.LittleEndian.Uint32(e[4:])), uint64(binary.LittleEndian.Uint32(e[8:])), uint64(binary.LittleEndian.Uint32(e[12:]))
		end := uint64(at) + pos + ksize + vsize
		if end > uint64(len(p)) {
			return fmt.Errorf("page %d: leaf element %d lies outside the page", id, i)
		}
		if eflags&boltBucketLeaf == 0 {
			continue
		}
		v := p[end-vsize : end]
		if len(v) < boltBucketHeader {
			return fmt.Errorf("page %d: bucket %d's header is %d bytes", id, i, len(v))
		}
		if root := binary.LittleEndian.Uint64(v); root != 0 {
			if err := c.checkTree(root, depth+1); err != nil {
				return err
			}
			continue
		}
		inline := v[boltBucketHeader:]
		if len(inline) < boltPageHeader {
			return fmt.Errorf("page %d: inline bucket %d is %d bytes", id, i, len(inline))
		}
		if err := c.checkPage(0, inline, depth+1); err != nil {
			return fmt.Errorf("inline bucket in page %d: %w", id, err)
		}
	}
	return nil
}
