/* test_lexer.c — the DL lexer: token kinds, positions, comments, literal
 * values, the context-dependent tokens ('[' and '.'), lexical errors and
 * their positions, the --emit=tokens format, and robustness on arbitrary
 * bytes. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "dcc.h"
#include "parser.h"

static FILE *diag_file;

/* Diagnostics go to a temporary file that captured() reads back. */
static void capture(void)
{
    diag_file = tmpfile();
    ck_assert_ptr_nonnull(diag_file);
    diag_set_stream(diag_file);
    diag_set_colour(0);
    diag_reset();
}

static char *captured(void)
{
    static char buf[1 << 16];
    fflush(diag_file);
    long n = ftell(diag_file);
    rewind(diag_file);
    size_t got = fread(buf, 1, n < (long)sizeof buf - 1 ? (size_t)n : sizeof buf - 1, diag_file);
    buf[got] = 0;
    fseek(diag_file, 0, SEEK_END);
    return buf;
}

#define ASSERT_DIAG(substr)                                                            \
    do {                                                                               \
        const char *d_ = captured();                                                   \
        ck_assert_msg(strstr(d_, substr) != NULL, "diagnostics lack \"%s\":\n%s", substr, d_); \
    } while (0)

static SrcFile *src_n(const char *text, size_t n)
{
    char *copy = xmalloc(n + 1);
    memcpy(copy, text, n);
    copy[n] = 0;
    return diag_add_file("t.dl", "t.dl", copy, n);
}

static SrcFile *src(const char *text) { return src_n(text, strlen(text)); }

static Token *lex(const char *text, int *n)
{
    return lexer_tokenize(src(text), n, false, NULL, NULL);
}

static void assert_kinds(const char *text, const int *kinds, int nkinds)
{
    int n;
    Token *t = lex(text, &n);
    ck_assert_msg(n == nkinds, "'%s': %d tokens, expected %d", text, n, nkinds);
    for (int i = 0; i < n; i++)
        ck_assert_msg(t[i].kind == kinds[i], "'%s': token %d has kind %d, expected %d", text, i,
                      t[i].kind, kinds[i]);
    free(t);
}

#define KINDS(text, ...)                                                               \
    do {                                                                               \
        static const int k_[] = {__VA_ARGS__};                                         \
        assert_kinds(text, k_, (int)(sizeof k_ / sizeof k_[0]));                       \
    } while (0)

START_TEST(test_kinds_simple)
{
    capture();
    KINDS("def f x = let y = x + 1 in y", T_DEF, T_IDENT, T_IDENT, T_EQ, T_LET, T_IDENT, T_EQ,
          T_IDENT, T_PLUS, T_INT, T_IN, T_IDENT);
    ck_assert_int_eq(diag_error_count(), 0);
}
END_TEST

START_TEST(test_kinds_keywords)
{
    capture();
    KINDS("def export import as type of let rec in fn if then else match with loop for while do "
          "true false",
          T_DEF, T_EXPORT, T_IMPORT, T_AS, T_TYPE, T_OF, T_LET, T_REC, T_IN, T_FN, T_IF, T_THEN,
          T_ELSE, T_MATCH, T_WITH, T_LOOP, T_FOR, T_WHILE, T_DO, T_TRUE, T_FALSE);
    /* keywords are whole words only */
    KINDS("define lets in_ iff", T_IDENT, T_IDENT, T_IDENT, T_IDENT);
    ck_assert_int_eq(diag_error_count(), 0);
}
END_TEST

START_TEST(test_kinds_operators)
{
    capture();
    KINDS("|> >>> *** || && == != < <= > >= + - * / % @ ^ ! = => -> : , .. | _",
          T_PIPE, T_COMPOSE, T_PAR, T_OROR, T_ANDAND, T_EQEQ, T_NE, T_LT, T_LE, T_GT, T_GE,
          T_PLUS, T_MINUS, T_STAR, T_SLASH, T_PERCENT, T_AT, T_CARET, T_BANG, T_EQ, T_FATARROW,
          T_ARROW, T_COLON, T_COMMA, T_DOTDOT, T_BAR, T_WILD);
    /* longest match, no spaces */
    KINDS("a>>>b|>c", T_IDENT, T_COMPOSE, T_IDENT, T_PIPE, T_IDENT);
    KINDS("x<=-1", T_IDENT, T_LE, T_MINUS, T_INT);
    ck_assert_int_eq(diag_error_count(), 0);
}
END_TEST

START_TEST(test_positions)
{
    capture();
    int n;
    Token *t = lex("let x =\n  foo 12\n\t\"s\"", &n);
    ck_assert_int_eq(n, 6);
    ck_assert_int_eq(t[0].loc.line, 1);
    ck_assert_int_eq(t[0].loc.col, 1);
    ck_assert_int_eq(t[0].loc.end_col, 3);
    ck_assert_int_eq(t[2].loc.col, 7);
    ck_assert_int_eq(t[3].loc.line, 2);
    ck_assert_int_eq(t[3].loc.col, 3);
    ck_assert_int_eq(t[3].loc.end_line, 2);
    ck_assert_int_eq(t[3].loc.end_col, 5);
    ck_assert_int_eq(t[4].loc.col, 7);
    ck_assert_int_eq(t[4].loc.end_col, 8);
    /* a tab is one column; a string spans its quotes */
    ck_assert_int_eq(t[5].loc.line, 3);
    ck_assert_int_eq(t[5].loc.col, 2);
    ck_assert_int_eq(t[5].loc.end_col, 4);
    ck_assert_str_eq(t[5].loc.file, "t.dl");
    free(t);
}
END_TEST

START_TEST(test_comments)
{
    capture();
    int n;
    Token *t = lex("a -- line comment ( [\n{- block {- nested -} still comment -} b\n"
                   "{--} c {- -- not a line comment -} d --", &n);
    ck_assert_int_eq(n, 4);
    ck_assert_str_eq(t[0].val.str, "a");
    ck_assert_str_eq(t[1].val.str, "b");
    ck_assert_int_eq(t[1].loc.line, 2);
    ck_assert_int_eq(t[1].loc.col, 40);
    ck_assert_str_eq(t[2].val.str, "c");
    ck_assert_str_eq(t[3].val.str, "d");
    ck_assert_int_eq(diag_error_count(), 0);
    free(t);
}
END_TEST

START_TEST(test_int_literals)
{
    capture();
    int n;
    Token *t = lex("0 42 9223372036854775807 007", &n);
    ck_assert_int_eq(n, 4);
    ck_assert_int_eq(t[0].kind, T_INT);
    ck_assert(t[0].val.ival == 0);
    ck_assert(t[1].val.ival == 42);
    ck_assert(t[2].val.ival == INT64_MAX);
    ck_assert(t[3].val.ival == 7);
    ck_assert_int_eq(diag_error_count(), 0);
    free(t);
}
END_TEST

START_TEST(test_float_literals)
{
    capture();
    int n;
    Token *t = lex("1.0 1e-3 2.5e10 2.0f32 1.5E+2f32 0.125 3e2", &n);
    ck_assert_int_eq(n, 7);
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(t[i].kind, T_FLOAT);
    ck_assert(t[0].val.fl.v == 1.0 && !t[0].val.fl.f32);
    ck_assert(t[1].val.fl.v == 1e-3);
    ck_assert(t[2].val.fl.v == 2.5e10);
    ck_assert(t[3].val.fl.v == 2.0 && t[3].val.fl.f32);
    ck_assert(t[4].val.fl.v == 150.0 && t[4].val.fl.f32);
    ck_assert(t[5].val.fl.v == 0.125);
    ck_assert(t[6].val.fl.v == 300.0);
    ck_assert_int_eq(diag_error_count(), 0);
    free(t);
}
END_TEST

START_TEST(test_string_literals)
{
    capture();
    int n;
    Token *t = lex("\"a\\n\\t\\\\\\\"\\x41\\101\\0z\" \"\" \"it's -- {- not a comment\"", &n);
    ck_assert_int_eq(n, 3);
    ck_assert_int_eq(t[0].kind, T_STRING);
    ck_assert_str_eq(t[0].val.str, "a\n\t\\\"AA");
    ck_assert_str_eq(t[1].val.str, "");
    ck_assert_str_eq(t[2].val.str, "it's -- {- not a comment");
    ck_assert_int_eq(diag_error_count(), 0);
    free(t);
}
END_TEST

START_TEST(test_names)
{
    capture();
    int n;
    Token *t = lex("x' foo_bar2 Some Node' 'a '_b _x _ x1'y", &n);
    ck_assert_int_eq(n, 9);
    ck_assert_int_eq(t[0].kind, T_IDENT);
    ck_assert_ptr_eq(t[0].val.str, intern("x'"));
    ck_assert_int_eq(t[1].kind, T_IDENT);
    ck_assert_ptr_eq(t[1].val.str, intern("foo_bar2"));
    ck_assert_int_eq(t[2].kind, T_CONID);
    ck_assert_str_eq(t[2].val.str, "Some");
    ck_assert_int_eq(t[3].kind, T_CONID);
    ck_assert_str_eq(t[3].val.str, "Node'");
    ck_assert_int_eq(t[4].kind, T_TYVAR);
    ck_assert_str_eq(t[4].val.str, "a");
    ck_assert_int_eq(t[5].kind, T_TYVAR);
    ck_assert_str_eq(t[5].val.str, "_b");
    ck_assert_int_eq(t[6].kind, T_IDENT);
    ck_assert_int_eq(t[7].kind, T_WILD);
    ck_assert_int_eq(t[8].kind, T_IDENT);
    ck_assert_str_eq(t[8].val.str, "x1'y");
    free(t);
}
END_TEST

/* '[' right after an operand indexes; anywhere else it opens an array. */
START_TEST(test_index_bracket)
{
    capture();
    KINDS("m[i] f [1]", T_IDENT, T_LBRACK_IDX, T_IDENT, T_RBRACK, T_IDENT, T_LBRACK, T_INT,
          T_RBRACK);
    KINDS("(x)[0] a[b][c]", T_LPAREN, T_IDENT, T_RPAREN, T_LBRACK_IDX, T_INT, T_RBRACK,
          T_IDENT, T_LBRACK_IDX, T_IDENT, T_RBRACK, T_LBRACK_IDX, T_IDENT, T_RBRACK);
    KINDS("[[1], [2]]", T_LBRACK, T_LBRACK, T_INT, T_RBRACK, T_COMMA, T_LBRACK, T_INT,
          T_RBRACK, T_RBRACK);
    KINDS("in [1] =[1] \"s\"[0] {a=1}[0]", T_IN, T_LBRACK, T_INT, T_RBRACK, T_EQ, T_LBRACK,
          T_INT, T_RBRACK, T_STRING, T_LBRACK_IDX, T_INT, T_RBRACK, T_LBRACE, T_IDENT, T_EQ,
          T_INT, T_RBRACE, T_LBRACK_IDX, T_INT, T_RBRACK);
    /* a comment in between separates */
    KINDS("x{--}[0]", T_IDENT, T_LBRACK, T_INT, T_RBRACK);
    ck_assert_int_eq(diag_error_count(), 0);
}
END_TEST

/* After '.', digits are an integer: t.0.1 is t . 0 . 1, not t . 0.1 */
START_TEST(test_projection)
{
    capture();
    int n;
    Token *t = lex("t.0.1 p.w1 (a, b).1 1.5", &n);
    static const int k[] = {T_IDENT, T_DOT, T_INT, T_DOT, T_INT, T_IDENT, T_DOT, T_IDENT,
                            T_LPAREN, T_IDENT, T_COMMA, T_IDENT, T_RPAREN, T_DOT, T_INT, T_FLOAT};
    ck_assert_int_eq(n, (int)(sizeof k / sizeof k[0]));
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(t[i].kind, k[i]);
    ck_assert(t[2].val.ival == 0);
    ck_assert(t[4].val.ival == 1);
    ck_assert_int_eq(t[4].loc.col, 5);
    ck_assert(t[14].val.ival == 1);
    ck_assert(t[15].val.fl.v == 1.5);
    ck_assert_int_eq(diag_error_count(), 0);
    free(t);
}
END_TEST

START_TEST(test_error_unterminated_string)
{
    capture();
    int n;
    Token *t = lex("x = \"abc\ny", &n);
    ck_assert_int_eq(diag_error_count(), 1);
    ASSERT_DIAG("t.dl:1:5: error: unterminated string literal");
    /* the lexer goes on with the next line */
    ck_assert_int_eq(n, 4);
    ck_assert_int_eq(t[2].kind, T_STRING);
    ck_assert_int_eq(t[3].kind, T_IDENT);
    free(t);
    t = lex("\n  \"abc", &n);
    ASSERT_DIAG("t.dl:2:3: error: unterminated string literal");
    free(t);
}
END_TEST

START_TEST(test_error_unterminated_comment)
{
    capture();
    int n;
    bool eof_error = false;
    Token *t = lexer_tokenize(src("a\n  {- b {- c -} d"), &n, false, &eof_error, NULL);
    ck_assert_int_eq(diag_error_count(), 1);
    ASSERT_DIAG("t.dl:2:3: error: unterminated block comment");
    ck_assert(eof_error);
    ck_assert_int_eq(n, 1);
    free(t);
}
END_TEST

START_TEST(test_error_invalid_chars)
{
    capture();
    int n;
    Token *t = lex("a $ b", &n);
    ASSERT_DIAG("t.dl:1:3: error: invalid character '$'");
    ck_assert_int_eq(n, 3);
    ck_assert_int_eq(t[1].kind, T_YYUNDEF);
    free(t);
    t = lex("a \x01 b", &n);
    ASSERT_DIAG("t.dl:1:3: error: invalid character (byte 0x01)");
    free(t);
    t = lexer_tokenize(src_n("a \0 b", 5), &n, false, NULL, NULL);
    ASSERT_DIAG("t.dl:1:3: error: invalid character (byte 0x00)");
    ck_assert_int_eq(n, 3);
    ck_assert_int_eq(t[2].loc.col, 5);
    free(t);
    t = lex("x = \xce\xbb y", &n); /* λ */
    ASSERT_DIAG("t.dl:1:5: error: invalid character (byte 0xce)");
    ck_assert_int_eq(diag_error_count(), 4); /* one error for the whole character */
    free(t);
}
END_TEST

START_TEST(test_error_numbers)
{
    capture();
    int n;
    Token *t = lex("99999999999999999999", &n);
    ASSERT_DIAG("t.dl:1:1: error: integer literal '99999999999999999999' is too large");
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(t[0].kind, T_INT);
    free(t);
    t = lex("f .5", &n);
    ASSERT_DIAG("t.dl:1:3: error: '.5' is not a number: write '0.5'");
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(t[1].kind, T_FLOAT);
    ck_assert(t[1].val.fl.v == 0.5);
    free(t);
    t = lex("2x", &n);
    ASSERT_DIAG("t.dl:1:1: error: invalid suffix 'x' on numeric literal");
    free(t);
    t = lex("y = 1f32", &n);
    ASSERT_DIAG("t.dl:1:5: error: an f32 literal needs a fraction or an exponent: write '1.0f32'");
    free(t);
    t = lex("1e999", &n);
    ASSERT_DIAG("out of range");
    free(t);
    ck_assert_int_eq(diag_error_count(), 5);
}
END_TEST

START_TEST(test_error_escape)
{
    capture();
    int n;
    Token *t = lex("s = \"ab\\qc\"", &n);
    ASSERT_DIAG("t.dl:1:8: error: invalid escape sequence '\\q' in string");
    ck_assert_int_eq(diag_error_count(), 1);
    ck_assert_int_eq(n, 3);
    ck_assert_str_eq(t[2].val.str, "abc");
    free(t);
}
END_TEST

START_TEST(test_error_nesting)
{
    capture();
    size_t depth = 1500;
    char *s = xmalloc(depth * 2 + 2);
    for (size_t i = 0; i < depth; i++)
        s[i] = '(';
    s[depth] = '1';
    for (size_t i = 0; i < depth; i++)
        s[depth + 1 + i] = ')';
    s[2 * depth + 1] = 0;
    int n;
    bool eof_error = false;
    Token *t = lexer_tokenize(src(s), &n, false, &eof_error, NULL);
    ASSERT_DIAG("t.dl:1:1001: error: nesting too deep");
    ck_assert_int_eq(diag_error_count(), 1);
    ck_assert(eof_error);
    free(t);
    /* 1000 levels are fine */
    diag_reset();
    s[1000] = '1';
    s[1001] = 0;
    t = lexer_tokenize(src(s), &n, false, &eof_error, NULL);
    ck_assert_int_eq(diag_error_count(), 0);
    ck_assert_int_eq(n, 1001);
    free(t);
    free(s);
}
END_TEST

START_TEST(test_dump_tokens)
{
    capture();
    FILE *out = tmpfile();
    lexer_dump_tokens(out, src("let x =\n  m[0] \"a'b\"  -- c"));
    rewind(out);
    char buf[512];
    size_t got = fread(buf, 1, sizeof buf - 1, out);
    buf[got] = 0;
    fclose(out);
    ck_assert_str_eq(buf, "1:1 LET 'let'\n"
                          "1:5 IDENT 'x'\n"
                          "1:7 EQ '='\n"
                          "2:3 IDENT 'm'\n"
                          "2:4 LBRACK_INDEX '['\n"
                          "2:5 INT '0'\n"
                          "2:6 RBRACK ']'\n"
                          "2:8 STRING '\"a\\'b\"'\n");
}
END_TEST

/* Arbitrary bytes never crash the lexer or the parser (a crash fails the
 * test: Check runs it in a child process). */
START_TEST(test_random_bytes)
{
    capture();
    unsigned long long seed = 0x9E3779B97F4A7C15ull;
    static const char alphabet[] = "()[]{}-{}-\"\\'.,:|=<>+*/%@^!&_aZx019 \n\tdefletinfnmatchwith";
    char buf[256];
    for (int iter = 0; iter < 3000; iter++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        size_t len = (seed >> 33) % sizeof buf;
        for (size_t i = 0; i < len; i++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            unsigned r = (unsigned)(seed >> 40);
            buf[i] = (r & 3) == 0 ? (char)(r >> 8) : alphabet[(r >> 8) % (sizeof alphabet - 1)];
        }
        SrcFile *f = src_n(buf, len);
        int n;
        Token *t = lexer_tokenize(f, &n, false, NULL, NULL);
        ck_assert_int_ge(n, 0);
        for (int i = 0; i < n; i++)
            ck_assert_int_ge(t[i].loc.line, 1);
        free(t);
        Module *m = parse_file(f);
        ck_assert_ptr_nonnull(m);
    }
}
END_TEST

static Suite *lexer_suite(void)
{
    Suite *s = suite_create("lexer");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_kinds_simple);
    tcase_add_test(tc, test_kinds_keywords);
    tcase_add_test(tc, test_kinds_operators);
    tcase_add_test(tc, test_positions);
    tcase_add_test(tc, test_comments);
    tcase_add_test(tc, test_int_literals);
    tcase_add_test(tc, test_float_literals);
    tcase_add_test(tc, test_string_literals);
    tcase_add_test(tc, test_names);
    tcase_add_test(tc, test_index_bracket);
    tcase_add_test(tc, test_projection);
    tcase_add_test(tc, test_error_unterminated_string);
    tcase_add_test(tc, test_error_unterminated_comment);
    tcase_add_test(tc, test_error_invalid_chars);
    tcase_add_test(tc, test_error_numbers);
    tcase_add_test(tc, test_error_escape);
    tcase_add_test(tc, test_error_nesting);
    tcase_add_test(tc, test_dump_tokens);
    tcase_add_test(tc, test_random_bytes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(lexer_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
