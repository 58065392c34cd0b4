from telegraf_llm_input.schema import markdown

print(markdown(), end="")
