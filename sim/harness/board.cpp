// The simulated board: the device under Verilator, its link wired to a pipe.
//
// PHY_UART: bytes read from stdin are sent on the device top's rx pin (8N1, DIVISOR
// clocks per bit); bytes the device sends on tx are decoded and written to stdout.
// PHY_STREAM: the same device core without its UART; bytes go straight onto its
// input stream and come off its output stream, one a clock (the "PHY" swapped for speed). When the device is
// idle and no input is pending, the harness sleeps in poll() instead of clocking, so
// an idle simulated board costs no CPU. On EOF of stdin it prints its statistics to
// stderr and exits. No Python runs per cycle.
//
// The link is the process's original stdout; the design's $display output (the SDRAM
// model's timing checker) goes to stderr instead, so it never mixes into the link.
//
// SDRAM_CLOCKS: the device carries the SDRAM controller in a clock domain of its own
// (sdram_clk / sdram_rst). Both clocks run from one time base: a half period of sync is
// SYNC_HALF ticks, of sdram SDRAM_HALF, its edges SDRAM_PHASE ticks late (never on an
// edge of sync). A "cycle" below is still one of sync. The SDRAM model's timing checker
// raising sdram_timing_violation ends the run: a message on stderr, exit status 3.
#include <poll.h>
#include <unistd.h>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <vector>

#include "verilated.h"
#include "Vboard.h"

#if !defined(PHY_STREAM) && !defined(DIVISOR)
#error "compile with -DPHY_STREAM or -DDIVISOR=<clocks per bit>"
#endif
#ifdef PHY_STREAM
#define DIVISOR 1
// Amaranth names the stream members i__valid etc.; Verilator escapes "__" as "___05F".
#define I_VALID i___05Fvalid
#define I_READY i___05Fready
#define I_PAYLOAD i___05Fpayload
#define O_VALID o___05Fvalid
#define O_READY o___05Fready
#define O_PAYLOAD o___05Fpayload
#endif

static Vboard *top;
static uint64_t cycles = 0;

#ifdef SDRAM_CLOCKS
static uint64_t next_sync_edge = SYNC_HALF, next_sdram_edge = SDRAM_PHASE;

// sync's next edge (to `level`), after every edge of the SDRAM clock before it
static void set_clk(int level) {
    while (next_sdram_edge < next_sync_edge) {
        top->sdram_clk = !top->sdram_clk;
        top->eval();
        next_sdram_edge += SDRAM_HALF;
    }
    top->clk = level;
    top->eval();
    next_sync_edge += SYNC_HALF;
}

static void set_rst(int level) {
    top->rst = level;
    top->sdram_rst = level;
}

static void check_sdram() {
    if (top->sdram_timing_violation) {
        fflush(stdout);
        fprintf(stderr, "board: SDRAM timing violation (LiteDRAM's model, details above) "
                        "at cycle %llu\n", (unsigned long long)cycles);
        top->final();
        exit(3);
    }
}
#else
static void set_clk(int level) {
    top->clk = level;
    top->eval();
}

static void set_rst(int level) { top->rst = level; }

static void check_sdram() {}
#endif

static void tick() {
    set_clk(0);
    set_clk(1);
    cycles++;
}

int main(int argc, char **argv) {
    Verilated::commandArgs(argc, argv);
    int link_fd = dup(1);
    dup2(2, 1);
    top = new Vboard;
#ifdef PHY_STREAM
    top->O_READY = 1;
    top->I_VALID = 0;
#else
    top->rx = 1;
#endif
    set_rst(1);
    for (int i = 0; i < 8; i++) tick();
    set_rst(0);

    std::deque<uint8_t> in;
    std::vector<uint8_t> out;
    bool eof = false;
    // rx driver state: the current frame of 10 bits, and clocks left in the current bit
    int rx_bit = -1, rx_clk = 0;
    uint16_t rx_frame = 0;
    // tx decoder state
    int tx_state = -1, tx_clk = 0;
    uint8_t tx_byte = 0;
    uint64_t idle_run = 0, bytes_in = 0, bytes_out = 0;
    auto t0 = std::chrono::steady_clock::now();
    const uint64_t settle = 2 * 10 * DIVISOR + 16;

    auto flush = [&]() {
        size_t off = 0;
        while (off < out.size()) {
            ssize_t n = write(link_fd, out.data() + off, out.size() - off);
            if (n < 0) {
                if (errno == EINTR) continue;
                return false;
            }
            off += (size_t)n;
        }
        out.clear();
        return true;
    };
    auto read_input = [&](int timeout_ms) {
        struct pollfd p = {0, POLLIN, 0};
        if (poll(&p, 1, timeout_ms) > 0) {
            uint8_t buf[4096];
            ssize_t n = read(0, buf, sizeof buf);
            if (n <= 0) eof = true;
            else in.insert(in.end(), buf, buf + n);
        }
    };

    for (;;) {
#ifdef PHY_STREAM
        bool line_busy = false;
#else
        bool line_busy = rx_bit >= 0 || tx_state >= 0;
#endif
        if (!line_busy && in.empty()) {
            idle_run = top->idle ? idle_run + 1 : 0;
            if (idle_run > settle) {
                if (!flush()) break;
                if (eof) break;
                read_input(-1);  // sleep until the host sends something
                idle_run = 0;
                continue;
            }
        } else {
            idle_run = 0;
        }
        if ((cycles & 1023) == 0 && !eof) read_input(0);

#ifdef PHY_STREAM
        if (!in.empty()) {
            top->I_VALID = 1;
            top->I_PAYLOAD = in.front();
        } else {
            top->I_VALID = 0;
        }
        set_clk(0);
        bool taken = top->I_VALID && top->I_READY;
        bool sent = top->O_VALID;
        uint8_t byte = top->O_PAYLOAD;
        set_clk(1);
        cycles++;
        check_sdram();
        if (taken) { in.pop_front(); bytes_in++; }
        if (sent) {
            out.push_back(byte);
            bytes_out++;
            if (out.size() >= 4096 && !flush()) break;
        }
    }
#else
        // drive rx
        if (rx_bit < 0 && !in.empty()) {
            rx_frame = (uint16_t)((in.front() << 1) | 0x200);  // start 0, data LSB first, stop 1
            in.pop_front();
            bytes_in++;
            rx_bit = 0;
            rx_clk = DIVISOR;
        }
        if (rx_bit >= 0) {
            top->rx = (rx_frame >> rx_bit) & 1;
            if (--rx_clk == 0) {
                rx_clk = DIVISOR;
                if (++rx_bit == 10) { rx_bit = -1; top->rx = 1; }
            }
        }

        tick();
        check_sdram();

        // decode tx, sampling each bit in its middle
        if (tx_state < 0) {
            if (!top->tx) { tx_state = 0; tx_clk = DIVISOR / 2; tx_byte = 0; }
        } else if (--tx_clk == 0) {
            tx_clk = DIVISOR;
            if (tx_state == 0) {
                if (top->tx) tx_state = -1;  // a glitch, not a start bit
                else tx_state = 1;
            } else if (tx_state <= 8) {
                tx_byte |= (uint8_t)(top->tx ? 1 : 0) << (tx_state - 1);
                tx_state++;
            } else {
                if (top->tx) { out.push_back(tx_byte); bytes_out++; }
                tx_state = -1;
                if (out.size() >= 4096 && !flush()) break;
            }
        }
    }
#endif
    flush();
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    fprintf(stderr, "board: %llu cycles, %llu bytes in, %llu bytes out, %.3f s\n",
            (unsigned long long)cycles, (unsigned long long)bytes_in,
            (unsigned long long)bytes_out, secs);
    top->final();
    delete top;
    return 0;
}
