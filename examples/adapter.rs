//! Prints what wgpu sees: adapters, their features and limits (a development aid).
fn main() {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle().with_env());
    for a in pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all())) {
        let info = a.get_info();
        println!("{} ({:?}, {:?})", info.name, info.backend, info.device_type);
        println!("  shader-f16: {}", a.features().contains(wgpu::Features::SHADER_F16));
        println!("  timestamp queries: {}", a.features().contains(wgpu::Features::TIMESTAMP_QUERY));
        println!("  subgroups: {}", a.features().contains(wgpu::Features::SUBGROUP));
        let l = a.limits();
        println!(
            "  max storage buffer binding: {} MB, workgroup storage {} KB",
            l.max_storage_buffer_binding_size >> 20,
            l.max_compute_workgroup_storage_size >> 10
        );
    }
}
