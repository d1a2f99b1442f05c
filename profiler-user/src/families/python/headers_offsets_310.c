#define Py_BUILD_CORE 1
#include <Python.h>
#include <frameobject.h>
#include <internal/pycore_runtime.h>
#include <internal/pycore_interp.h>
#include <stddef.h>
#include <stdio.h>
int main(void) {
  printf("runtime_interpreters_head %zu\n", offsetof(_PyRuntimeState, interpreters.head));
  printf("interp_threads_head %zu\n", offsetof(PyInterpreterState, tstate_head));
  printf("tstate_next %zu\n", offsetof(PyThreadState, next));
  printf("tstate_key %zu\n", offsetof(PyThreadState, thread_id));
  printf("tstate_frame %zu\n", offsetof(PyThreadState, frame));
  printf("frame_code %zu\n", offsetof(PyFrameObject, f_code));
  printf("frame_previous %zu\n", offsetof(PyFrameObject, f_back));
  printf("frame_instr %zu\n", offsetof(PyFrameObject, f_lasti));
  printf("code_filename %zu\n", offsetof(PyCodeObject, co_filename));
  printf("code_name %zu\n", offsetof(PyCodeObject, co_name));
  printf("code_qualname %zu\n", offsetof(PyCodeObject, co_name));
  printf("code_firstlineno %zu\n", offsetof(PyCodeObject, co_firstlineno));
  printf("code_linetable %zu\n", offsetof(PyCodeObject, co_linetable));
  printf("ascii_data %zu\n", sizeof(PyASCIIObject));
  printf("compact_data %zu\n", sizeof(PyCompactUnicodeObject));
  printf("exception_args %zu\n", offsetof(PyBaseExceptionObject, args));
  printf("tuple_items %zu\n", offsetof(PyTupleObject, ob_item));
  printf("type_flags %zu\n", offsetof(PyTypeObject, tp_flags));
  return 0;
}
