/* The shared library victim: libvictim.so, linked into victim_lib. */
volatile long lib_sink;

__attribute__((noinline, noipa)) long lib_function(long x)
{
	lib_sink = lib_sink + x;
	return lib_sink;
}
