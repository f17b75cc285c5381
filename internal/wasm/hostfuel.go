package wasm

import (
	"context"
	"encoding/binary"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
)

// Host calls pay from the request's fuel for what they do, on top of the
// instructions of the call itself: a base cost for the trip out of
// compiled code and back (0.5 to 1.5 µs, where a unit of fuel is 0.3 to
// 0.8 ns of compiled code; 512 keeps a one-call function within a budget
// of 1,000), and the bytes they move at the rate of the bulk memory
// instructions (one unit per 16 bytes). random_get pays 4 units a byte:
// the generator takes a few nanoseconds a byte. A call the remaining fuel
// cannot pay for traps before it does its work, and the request fails
// with fuel.
const (
	hostCallUnits      = 512
	hostBytesShift     = 4
	randomUnitsPerByte = 4
	iovecBytes         = 8
	subscriptionBytes  = 48
)

// bytesUnits is the fuel n moved bytes cost.
func bytesUnits(n uint64) int64 { return int64(n >> hostBytesShift) }

// charge takes units of fuel for a host call, from the fuel in hand and
// then the reserve, and traps if the two cannot pay: the fuel in hand is
// then negative and the reserve empty, which Serve reports as fuel. Fuel
// in hand already negative means interrupt ran: the call traps.
func (st *instanceState) charge(fn string, units int64) {
	st.mu.Lock()
	if st.fuel == nil { // no request is running: nothing to pay from
		st.mu.Unlock()
		return
	}
	inHand, reserve := int64(st.fuel.Get()), int64(st.reserve.Get())
	remaining := inHand
	if inHand >= 0 {
		remaining = inHand + reserve - units
		if fromReserve := units - inHand; fromReserve > 0 && remaining >= 0 {
			inHand, reserve = 0, reserve-fromReserve
		} else if remaining >= 0 {
			inHand -= units
		} else {
			inHand, reserve = remaining, 0
		}
		st.fuel.Set(api.EncodeI64(inHand))
		st.reserve.Set(api.EncodeI64(reserve))
	}
	st.mu.Unlock()
	if remaining < 0 {
		panic(trapError{fn + ": out of fuel"})
	}
}

// chargeHost charges a call of the aegis host module that moved n bytes.
func chargeHost(ctx context.Context, fn string, n int) {
	state(ctx, fn).charge(HostModule+"."+fn, hostCallUnits+bytesUnits(uint64(n)))
}

// wasiMeter charges WASI calls. It is a function listener on the WASI
// host module, whose functions wazero implements: Before runs ahead of
// each call with its arguments, so the charge is taken before the work.
type wasiMeter struct{}

func (wasiMeter) NewFunctionListener(api.FunctionDefinition) experimental.FunctionListener {
	return wasiMeter{}
}

func (wasiMeter) Before(ctx context.Context, mod api.Module, def api.FunctionDefinition, params []uint64, _ experimental.StackIterator) {
	st, ok := ctx.Value(stateKey{}).(*instanceState)
	if !ok {
		return
	}
	name := def.Name()
	st.charge(WASIModule+"."+name, hostCallUnits+wasiUnits(st, mod, name, params))
}

func (wasiMeter) After(context.Context, api.Module, api.FunctionDefinition, []uint64) {}

func (wasiMeter) Abort(context.Context, api.Module, api.FunctionDefinition, error) {}

// wasiUnits is what a WASI call costs beyond the base, from its arguments:
// what it will write or read, random bytes, the environment it copies.
func wasiUnits(st *instanceState, mod api.Module, name string, p []uint64) int64 {
	switch name {
	case "random_get":
		// Past the end of memory the call fails without work.
		n := uint64(api.DecodeU32(p[1]))
		if mem := mod.Memory(); mem != nil && n > uint64(mem.Size()) {
			n = 0
		}
		return int64(n) * randomUnitsPerByte
	case "fd_write", "fd_pwrite":
		return bytesUnits(iovecBytesTotal(mod, api.DecodeU32(p[1]), api.DecodeU32(p[2])))
	case "fd_read", "fd_pread":
		// Only stdin can be read: what it holds bounds what a read moves.
		n := min(iovecBytesTotal(mod, api.DecodeU32(p[1]), api.DecodeU32(p[2])), uint64(st.stdinLeft()))
		return bytesUnits(n + uint64(api.DecodeU32(p[2]))*iovecBytes)
	case "environ_get":
		return bytesUnits(uint64(len(st.environ.buf)))
	case "args_get":
		return bytesUnits(uint64(st.argsBytes))
	case "poll_oneoff":
		return bytesUnits(uint64(api.DecodeU32(p[2])) * subscriptionBytes)
	}
	return 0
}

// iovecBytesTotal adds up the lengths of an iovec array, the bytes a
// read or write moves. An array outside memory adds nothing: the call
// fails without moving anything.
func iovecBytesTotal(mod api.Module, ptr, count uint32) uint64 {
	total := uint64(count) * iovecBytes
	mem := mod.Memory()
	if mem == nil || total > uint64(mem.Size()) {
		return total
	}
	raw, ok := mem.Read(ptr, uint32(total))
	if !ok {
		return total
	}
	for i := uint32(0); i < count; i++ {
		total += uint64(binary.LittleEndian.Uint32(raw[i*iovecBytes+4:]))
	}
	return total
}
