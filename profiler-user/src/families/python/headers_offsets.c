#define Py_BUILD_CORE 1
#include <Python.h>
#include <internal/pycore_frame.h>
#include <internal/pycore_runtime.h>
#include <internal/pycore_interp.h>
#include <stddef.h>
#include <stdio.h>
int main(void) {
  printf("runtime_interpreters_head %zu\n", offsetof(_PyRuntimeState, interpreters.head));
  printf("interp_threads_head %zu\n", offsetof(PyInterpreterState, threads.head));
  printf("tstate_next %zu\n", offsetof(PyThreadState, next));
  printf("tstate_key %zu\n", offsetof(PyThreadState, native_thread_id));
  printf("tstate_frame %zu\n", offsetof(PyThreadState, cframe));
  printf("cframe_frame %zu\n", offsetof(_PyCFrame, current_frame));
  printf("frame_code %zu\n", offsetof(_PyInterpreterFrame, f_code));
  printf("frame_previous %zu\n", offsetof(_PyInterpreterFrame, previous));
  printf("frame_instr %zu\n", offsetof(_PyInterpreterFrame, prev_instr));
#if PY_VERSION_HEX < 0x030C0000
  printf("frame_entry %zu\n", offsetof(_PyInterpreterFrame, is_entry));
#else
  printf("frame_owner %zu\n", offsetof(_PyInterpreterFrame, owner));
  printf("owner_cstack %d\n", FRAME_OWNED_BY_CSTACK);
#endif
  printf("code_filename %zu\n", offsetof(PyCodeObject, co_filename));
  printf("code_name %zu\n", offsetof(PyCodeObject, co_name));
  printf("code_qualname %zu\n", offsetof(PyCodeObject, co_qualname));
  printf("code_firstlineno %zu\n", offsetof(PyCodeObject, co_firstlineno));
  printf("code_linetable %zu\n", offsetof(PyCodeObject, co_linetable));
  printf("code_adaptive %zu\n", offsetof(PyCodeObject, co_code_adaptive));
  printf("ascii_data %zu\n", sizeof(PyASCIIObject));
  printf("compact_data %zu\n", sizeof(PyCompactUnicodeObject));
  printf("exception_args %zu\n", offsetof(PyBaseExceptionObject, args));
  printf("tuple_items %zu\n", offsetof(PyTupleObject, ob_item));
  printf("type_flags %zu\n", offsetof(PyTypeObject, tp_flags));
  return 0;
}
