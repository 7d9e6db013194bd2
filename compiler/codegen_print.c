/* codegen_print.c — print, println and show of any ground type, in DL
 * literal syntax (docs/language.md §9 "Printing"):
 *   floats as Python's repr (libdlrt's dl_print_f64/f32), ints as digits,
 *   true/false, (), a string given directly raw and a string inside another
 *   value quoted with C escapes, tuples (1, 2.0), records { a = 9.0, b = 2.0 }
 *   in declaration order, arrays [1.0, 2.0] / [[1, 2], [3, 4]] / [],
 *   constructors None, Some 3, Rect (1.0, 2.0); a constructor argument that
 *   is itself a constructor application with an argument, or a negative
 *   number, is parenthesised: Some (Some 3), Some (-1.0).
 * Structured types get one generated function each (dl.print.TYPE), so that
 * recursive variants print through recursion. */
#include "codegen.h"

#include <string.h>

static void puts_lit(Cg *cg, const char *s)
{
    LLVMValueRef p = cg_cstr(cg, s);
    cg_call_rt(cg, "dl_print_str", &p, 1);
}

static bool scalar_elem(Type *t)
{
    t = cg_norm(t);
    return t->kind == TY_FLOAT || t->kind == TY_F32 || t->kind == TY_INT || t->kind == TY_BOOL;
}

/* v < 0, as printed: a leading minus sign (so -0.0 too, never NaN). */
static LLVMValueRef is_negative(Cg *cg, Type *t, LLVMValueRef v)
{
    t = cg_norm(t);
    if (t->kind == TY_INT)
        return LLVMBuildICmp(cg->b, LLVMIntSLT, v, cg_i64(cg, 0), "");
    LLVMTypeRef it = t->kind == TY_F32 ? cg->t_i32 : cg->t_i64;
    LLVMValueRef bits = LLVMBuildBitCast(cg->b, v, it, "");
    LLVMValueRef sign = LLVMBuildICmp(cg->b, LLVMIntSLT, bits, LLVMConstInt(it, 0, 0), "");
    LLVMValueRef ord = LLVMBuildFCmp(cg->b, LLVMRealORD, v, v, "");
    return LLVMBuildAnd(cg->b, sign, ord, "");
}

static void print_body(Cg *cg, Type *t, LLVMValueRef v);

/* The argument of a constructor: parenthesised when it is a constructor
 * application with an argument or a negative number. */
static void print_con_arg(Cg *cg, Type *at, LLVMValueRef v)
{
    at = cg_norm(at);
    LLVMValueRef paren = NULL;
    if (at->kind == TY_INT || at->kind == TY_FLOAT || at->kind == TY_F32) {
        paren = is_negative(cg, at, v);
    } else if (at->kind == TY_NAMED && at->decl->kind == TD_VARIANT) {
        /* a constructor with an argument: tag among those that have one */
        LLVMValueRef tp = LLVMBuildGEP2(cg->b, cg->t_i8, v, (LLVMValueRef[]){cg_i64(cg, 8)}, 1, "");
        LLVMValueRef tag = LLVMBuildLoad2(cg->b, cg->t_i64, tp, "tag");
        paren = LLVMConstInt(cg->t_i1, 0, 0);
        for (int c = 0; c < at->decl->ncons; c++)
            if (cg_con_arg(at, c))
                paren = LLVMBuildOr(cg->b, paren, LLVMBuildICmp(cg->b, LLVMIntEQ, tag, cg_i64(cg, c), ""), "");
    }
    if (!paren) {
        cg_print(cg, at, v, true);
        return;
    }
    LLVMBasicBlockRef open = cg_block(cg, "open"), body = cg_block(cg, "arg"), close = cg_block(cg, "close"),
                      done = cg_block(cg, "done");
    LLVMBuildCondBr(cg->b, paren, open, body);
    LLVMPositionBuilderAtEnd(cg->b, open);
    puts_lit(cg, "(");
    LLVMBuildBr(cg->b, body);
    LLVMPositionBuilderAtEnd(cg->b, body);
    cg_print(cg, at, v, true);
    LLVMBuildCondBr(cg->b, paren, close, done);
    LLVMPositionBuilderAtEnd(cg->b, close);
    puts_lit(cg, ")");
    LLVMBuildBr(cg->b, done);
    LLVMPositionBuilderAtEnd(cg->b, done);
}

/* Axis k of an array of non-scalar elements, starting at element offset
 * `base` (row-major); loops are generated per axis since the rank is known. */
static void print_axis(Cg *cg, Type *elem, int rank, int k, LLVMValueRef arr, LLVMValueRef data,
                       LLVMValueRef base)
{
    LLVMValueRef n = cg_arr_dimk(cg, arr, k);
    puts_lit(cg, "[");
    CgLoop l;
    LLVMValueRef i = cg_loop_begin(cg, &l, cg_i64(cg, 0), n);
    LLVMBasicBlockRef sep = cg_block(cg, "sep"), item = cg_block(cg, "item");
    LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntSGT, i, cg_i64(cg, 0), ""), sep, item);
    LLVMPositionBuilderAtEnd(cg->b, sep);
    puts_lit(cg, ", ");
    LLVMBuildBr(cg->b, item);
    LLVMPositionBuilderAtEnd(cg->b, item);
    LLVMValueRef idx = LLVMBuildAdd(cg->b, LLVMBuildMul(cg->b, base, n, ""), i, "");
    if (k == rank - 1)
        cg_print(cg, elem, cg_elem_load(cg, elem, data, idx), true);
    else
        print_axis(cg, elem, rank, k + 1, arr, data, idx);
    cg_loop_end(cg, &l);
    puts_lit(cg, "]");
}

static void print_body(Cg *cg, Type *t, LLVMValueRef v)
{
    switch (t->kind) {
    case TY_TUPLE:
        puts_lit(cg, "(");
        for (int i = 0; i < t->nargs; i++) {
            if (i)
                puts_lit(cg, ", ");
            cg_print(cg, t->args[i], LLVMBuildExtractValue(cg->b, v, (unsigned)i, ""), true);
        }
        puts_lit(cg, ")");
        break;
    case TY_ARRAY:
        print_axis(cg, t->elem, t->rank, 0, v, cg_arr_data(cg, v), cg_i64(cg, 0));
        break;
    case TY_NAMED:
        if (t->decl->kind == TD_RECORD) {
            puts_lit(cg, "{ ");
            for (int i = 0; i < t->decl->nfields; i++) {
                if (i)
                    puts_lit(cg, ", ");
                puts_lit(cg, t->decl->fields[i]);
                puts_lit(cg, " = ");
                cg_print(cg, cg_record_field(t, i), LLVMBuildExtractValue(cg->b, v, (unsigned)i, ""), true);
            }
            puts_lit(cg, t->decl->nfields ? " }" : "}");
        } else {
            LLVMValueRef tp = LLVMBuildGEP2(cg->b, cg->t_i8, v, (LLVMValueRef[]){cg_i64(cg, 8)}, 1, "");
            LLVMValueRef tag = LLVMBuildLoad2(cg->b, cg->t_i64, tp, "tag");
            LLVMBasicBlockRef done = cg_block(cg, "done");
            LLVMValueRef sw = LLVMBuildSwitch(cg->b, tag, done, (unsigned)t->decl->ncons);
            for (int c = 0; c < t->decl->ncons; c++) {
                LLVMBasicBlockRef bb = cg_block(cg, "con");
                LLVMAddCase(sw, cg_i64(cg, c), bb);
                LLVMPositionBuilderAtEnd(cg->b, bb);
                puts_lit(cg, t->decl->cons[c]);
                Type *at = cg_con_arg(t, c);
                if (at) {
                    puts_lit(cg, " ");
                    LLVMTypeRef f[3] = {cg->t_i64, cg->t_i64, cg_type(cg, at)};
                    LLVMTypeRef cty = LLVMStructTypeInContext(cg->ctx, f, 3, 0);
                    LLVMValueRef pv = LLVMBuildLoad2(cg->b, f[2], LLVMBuildStructGEP2(cg->b, cty, v, 2, ""), "");
                    print_con_arg(cg, at, pv);
                }
                LLVMBuildBr(cg->b, done);
            }
            LLVMPositionBuilderAtEnd(cg->b, done);
        }
        break;
    default:
        break;
    }
}

void cg_print(Cg *cg, Type *t, LLVMValueRef v, bool nested)
{
    t = cg_norm(t);
    switch (t->kind) {
    case TY_FLOAT:
        cg_call_rt(cg, "dl_print_f64", &v, 1);
        return;
    case TY_F32:
        cg_call_rt(cg, "dl_print_f32", &v, 1);
        return;
    case TY_INT:
        cg_call_rt(cg, "dl_print_i64", &v, 1);
        return;
    case TY_BOOL:
        cg_call_rt(cg, "dl_print_bool", &v, 1);
        return;
    case TY_UNIT:
        cg_call_rt(cg, "dl_print_unit", NULL, 0);
        return;
    case TY_STRING:
        cg_call_rt(cg, nested ? "dl_print_string_literal" : "dl_print_str", &v, 1);
        return;
    case TY_KEY:
        puts_lit(cg, "<key>");
        return;
    case TY_FUNC:
        puts_lit(cg, "<fun>");
        return;
    case TY_ARRAY:
        if (scalar_elem(t->elem)) {
            cg_call_rt(cg, "dl_print_array", &v, 1);
            return;
        }
        break;
    default:
        break;
    }
    CgType *ti = cg_tinfo(cg, t);
    if (!ti->print) {
        CgSaved s;
        ti->print = cg_helper_begin(cg, arena_printf(dcc_arena, "dl.print.%s", ti->key),
                                    LLVMFunctionType(cg->t_void, &ti->ll, 1, 0), &s);
        print_body(cg, ti->type, LLVMGetParam(ti->print, 0));
        LLVMBuildRetVoid(cg->b);
        cg_helper_end(cg, &s);
    }
    cg_call(cg, ti->print, &v, 1);
}

/* show: the printed form (as print writes it) captured through a memory
 * stream set as libdlrt's output, copied into a new DL string. */
LLVMValueRef cg_show(Cg *cg, Type *t, LLVMValueRef v)
{
    LLVMValueRef bufp = cg_alloca(cg, cg->t_ptr, "buf"), lenp = cg_alloca(cg, cg->t_i64, "len");
    cg_call_rt(cg, "dl_flush", NULL, 0);
    LLVMValueRef f = cg_call_rt(cg, "open_memstream", (LLVMValueRef[]){bufp, lenp}, 2);
    LLVMValueRef old = cg_call_rt(cg, "dl_set_output", &f, 1);
    cg_print(cg, t, v, false);
    cg_call_rt(cg, "dl_set_output", &old, 1);
    cg_call_rt(cg, "fclose", &f, 1);
    LLVMValueRef buf = LLVMBuildLoad2(cg->b, cg->t_ptr, bufp, "");
    LLVMValueRef len = LLVMBuildLoad2(cg->b, cg->t_i64, lenp, "");
    LLVMValueRef s = cg_string_new(cg, len);
    LLVMBuildMemCpy(cg->b, s, 1, buf, 1, len);
    cg_free(cg, buf);
    return s;
}
