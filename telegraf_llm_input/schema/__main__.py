from telegraf_llm_input.schema import markdown
from telegraf_llm_input.servers import field_servers

print(markdown(field_servers()), end="")
